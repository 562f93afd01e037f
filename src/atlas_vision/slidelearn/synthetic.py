"""The synthetic slide task where long range matters: do two distant marked regions match?

Each slide shows a few tissue pieces (pink, with purple nuclei) on a white background. The leftmost and the
rightmost piece each carry one *marked region*: a small disc of one of ``marker_types`` stains. The label is
``same`` when both marks have the same stain and ``different`` otherwise (balanced; the first stain is uniform,
the second equals it with probability 1/2 and is otherwise uniform over the others).

Why heads that score regions independently stay at chance: with per-cell features ``f`` and any pooling that is a
weighted mean (mean pooling; ABMIL's attention weights depend on each cell alone), the slide embedding is, up to
tissue noise, ``c + w f(A) + w' f(B)`` for the two stains ``A, B``. A linear classifier on it computes
``t(A) + t(B)`` with ``t(k) = w . f(k)``; "same" needs ``2 t(j) > theta`` for every ``j`` and
``t(j) + t(k) < theta`` for every ``j != k`` -- impossible, since the first two imply ``t(j) + t(k) > theta``.
The marks are further apart than a region of ``slide embed``, so no region (and no feature) sees both.
A head with slide-wide context (the Atlas head: cells attend across the whole grid) can compare the two.

Everything here is a pure function of ``(seed, index)``: :func:`slide_spec` draws the layout,
:func:`paint_slide` renders it as RGB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CLASS_NAMES: tuple[str, str] = ("different", "same")
# stains of the marked regions (RGB): DAB brown, hematoxylin-dark blue, a green and a red tissue dye
MARKER_COLOURS: tuple[tuple[int, int, int], ...] = ((120, 70, 25), (35, 40, 120), (30, 120, 60), (175, 25, 35))
TISSUE_COLOUR = np.array([232, 170, 205], dtype=np.float32)
NUCLEUS_COLOUR = np.array([110, 60, 150], dtype=np.float32)
BACKGROUND = 245


@dataclass(frozen=True)
class SlideTaskParams:
    """Geometry of the synthetic slides, in pixels of the level that is embedded.

    Attributes:
        width, height: slide size.
        marker_radius: radius of a marked region.
        marker_types: number of stains (>= 2).
        middle_pieces: tissue pieces between the two marked ones (no marks).
    """

    width: int = 768
    height: int = 512
    marker_radius: int = 14
    marker_types: int = 4
    middle_pieces: int = 2

    def __post_init__(self) -> None:
        if self.width < 192 or self.height < 96:
            raise ValueError(f"slide must be at least 192x96 px, got {self.width}x{self.height}")
        if not 2 <= self.marker_types <= len(MARKER_COLOURS):
            raise ValueError(f"marker_types must be in [2, {len(MARKER_COLOURS)}], got {self.marker_types}")
        if not 2 <= self.marker_radius <= self.height // 8:
            raise ValueError(f"marker_radius must be in [2, {self.height // 8}], got {self.marker_radius}")
        if not 0 <= self.middle_pieces <= 4:
            raise ValueError(f"middle_pieces must be in [0, 4], got {self.middle_pieces}")


@dataclass(frozen=True)
class Piece:
    """An elliptic tissue piece with a wobbly outline: centre, radii, rotation, outline harmonics."""

    cx: float
    cy: float
    rx: float
    ry: float
    angle: float
    wobble: tuple[tuple[float, float], ...]  # (amplitude, phase) of harmonics 2, 3, 4, ...


@dataclass(frozen=True)
class SlideSpec:
    """One slide: its tissue pieces, the two marks ``(x, y, stain)`` and the label (1 = same stain)."""

    pieces: tuple[Piece, ...]
    marks: tuple[tuple[float, float, int], tuple[float, float, int]]
    label: int
    seed: int


def _piece(rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float) -> Piece:
    wobble = tuple((float(rng.uniform(0.02, 0.12)), float(rng.uniform(0, 2 * math.pi))) for _ in range(3))
    return Piece(cx, cy, rx, ry, float(rng.uniform(0, math.pi)), wobble)


def slide_spec(params: SlideTaskParams, seed: int, index: int) -> SlideSpec:
    """Draw slide ``index`` of the data set ``seed`` (label balanced by construction)."""
    rng = np.random.default_rng([seed, index, 0x511DE])
    w, h = params.width, params.height
    label = int(rng.integers(0, 2))
    first = int(rng.integers(0, params.marker_types))
    second = first if label else int((first + rng.integers(1, params.marker_types)) % params.marker_types)
    pieces, marks = [], []
    for side, stain in ((0, first), (1, second)):
        rx, ry = w * rng.uniform(0.08, 0.12), h * rng.uniform(0.22, 0.32)
        cx = w * (0.13 + 0.74 * side) + rng.uniform(-0.03, 0.03) * w
        cy = h * rng.uniform(0.35, 0.65)
        pieces.append(_piece(rng, cx, cy, rx, ry))
        # the mark sits well inside its piece
        r, a = rng.uniform(0, 0.45), rng.uniform(0, 2 * math.pi)
        marks.append((cx + r * rx * math.cos(a), cy + r * ry * math.sin(a), stain))
    for i in range(params.middle_pieces):
        span = 0.5 / max(params.middle_pieces, 1)
        cx = w * (0.3 + span * (i + 0.5)) + rng.uniform(-0.03, 0.03) * w
        pieces.append(
            _piece(rng, cx, h * rng.uniform(0.3, 0.7), w * rng.uniform(0.04, 0.07), h * rng.uniform(0.12, 0.3))
        )
    return SlideSpec(tuple(pieces), (marks[0], marks[1]), label, seed)


def _bbox(piece: Piece, y0: int, x0: int, h: int, w: int) -> tuple[slice, slice]:
    """Rows and columns of the window that the piece can cover."""
    reach = max(piece.rx, piece.ry) * (1.0 + sum(a for a, _ in piece.wobble)) + 1.0
    top, bottom = int(piece.cy - reach) - y0, int(piece.cy + reach) + 2 - y0
    left, right = int(piece.cx - reach) - x0, int(piece.cx + reach) + 2 - x0
    return slice(max(top, 0), min(bottom, h)), slice(max(left, 0), min(right, w))


def _piece_mask(piece: Piece, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    dx, dy = xx - piece.cx, yy - piece.cy
    c, s = math.cos(piece.angle), math.sin(piece.angle)
    u, v = (c * dx + s * dy) / piece.rx, (-s * dx + c * dy) / piece.ry
    theta = np.arctan2(v, u)
    radius = 1.0 + sum(a * np.cos((k + 2) * theta + p) for k, (a, p) in enumerate(piece.wobble))
    return u * u + v * v <= radius * radius


def paint_slide(
    spec: SlideSpec, params: SlideTaskParams, origin: tuple[int, int] = (0, 0), size: tuple[int, int] | None = None
) -> np.ndarray:
    """Render ``uint8 [h, w, 3]`` of the window at ``origin = (y, x)`` of ``size = (h, w)`` (default: the
    whole slide), so a generator can paint tile by tile. Nuclei are drawn from a seeded hash of the position, so
    tiles agree at their borders."""
    h, w = size if size is not None else (params.height, params.width)
    y0, x0 = origin
    yy, xx = np.meshgrid(
        np.arange(y0, y0 + h, dtype=np.float32), np.arange(x0, x0 + w, dtype=np.float32), indexing="ij"
    )
    tissue = np.zeros((h, w), dtype=bool)
    for piece in spec.pieces:
        rows, cols = _bbox(piece, y0, x0, h, w)
        if rows.start < rows.stop and cols.start < cols.stop:
            tissue[rows, cols] |= _piece_mask(piece, yy[rows, cols], xx[rows, cols])
    image = np.full((h, w, 3), BACKGROUND, dtype=np.float32)
    # nuclei: a dark dot on a 6-px lattice cell with probability ~0.35, jittered, from a position hash
    cell = 6
    gy, gx = (yy // cell).astype(np.int64), (xx // cell).astype(np.int64)
    hashed = (gy * 73856093) ^ (gx * 19349663) ^ (spec.seed * 83492791)
    u1 = (hashed % 1000) / 1000.0
    u2 = ((hashed // 1000) % 1000) / 1000.0
    u3 = ((hashed // 1000000) % 1000) / 1000.0
    centre_y, centre_x = gy * cell + 1.5 + 3 * u2, gx * cell + 1.5 + 3 * u3
    nucleus = (u1 < 0.35) & ((yy - centre_y) ** 2 + (xx - centre_x) ** 2 <= 2.2**2)
    shade = 0.9 + 0.2 * u2[..., None]
    image[tissue] = TISSUE_COLOUR * shade[tissue]
    image[tissue & nucleus] = NUCLEUS_COLOUR
    for mx, my, stain in spec.marks:
        disc = (yy - my) ** 2 + (xx - mx) ** 2 <= params.marker_radius**2
        image[disc] = np.array(MARKER_COLOURS[stain], dtype=np.float32) * shade[disc]
    return np.clip(image, 0, 255).astype(np.uint8)
