"""The synthetic slide task where long range matters: which of two distant marks is on the left?

A slide is ``columns`` side-by-side strips, each holding one tissue piece (H&E-like, drawn by
:mod:`atlas_vision.slide.synthetic`). Two pieces, in two different strips chosen at random, carry a *mark*: a small
disc of stain -- one DAB-brown, one hematoxylin-blue. The label is their left-right order: ``brown-left`` (the brown
mark is in the left of the two marked pieces) or ``blue-left``.

Why heads that pool cells independently stay at chance, by construction: every slide holds exactly one brown and
one blue mark, and every strip's piece and mark are drawn from the same distribution relative to the strip. A strip
is exactly one ``slide embed`` region wide (``region_size`` at the embedding resolution, overlap 0), so no region
sees both marks and the *bag* of cell features has the same distribution under both labels; mean pooling and ABMIL
(any function of the bag, in fact) cannot beat 50 %. The label lives only in where the two marks are relative to
each other, hundreds of pixels apart: a head with slide-wide context and positions (the Atlas head) can read it.

Why not "do the two marks match?": a bag model already beats chance there (e.g. "both marks are brown" implies
"match"; with ``K`` stains such rules reach 62.5 % and more), which a prototype of this task confirmed
(ABMIL 65 % on held-out slides) -- so the order task, whose bags carry no information at all.

Every slide is a pure function of ``(seed, index)``: :func:`slide_spec` draws it, :func:`write_task_slide` writes it
as a pyramidal JPEG TIFF through the whole-slide generator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASS_NAMES: tuple[str, str] = ("blue-left", "brown-left")
BROWN, BLUE = (125, 70, 25), (40, 45, 140)
HARMONICS = 5


@dataclass(frozen=True)
class SlideTaskParams:
    """Geometry of the synthetic slides in level-0 pixels.

    Attributes:
        width, height: level-0 slide size; ``width`` must be ``columns`` strips of a whole number of px.
        columns: strips (one tissue piece each); marks go into two different strips.
        mark_radius: radius of a mark.
        mpp: level-0 microns per pixel written into the TIFF.
    """

    width: int = 768
    height: int = 256
    columns: int = 3
    mark_radius: float = 18.0
    mpp: float = 1.0

    def __post_init__(self) -> None:
        if self.columns < 2:
            raise ValueError(f"columns must be >= 2 (two marks in different strips), got {self.columns}")
        if self.width % self.columns:
            raise ValueError(f"width={self.width} must be a multiple of columns={self.columns}")
        if self.strip < 64 or self.height < 64:
            raise ValueError(f"strips must be at least 64x64 px, got {self.strip}x{self.height}")
        if not 2 <= self.mark_radius <= min(self.strip, self.height) / 8:
            raise ValueError(
                f"mark_radius must be in [2, {min(self.strip, self.height) / 8:g}] for {self.strip}x{self.height} "
                f"strips, got {self.mark_radius}"
            )

    @property
    def strip(self) -> int:
        """Strip width in level-0 px (= the ``slide embed`` region side at level 0)."""
        return self.width // self.columns


@dataclass(frozen=True)
class SlideSpec:
    """One slide: its tissue layout, the two marks ``(x, y, rgb)`` (left one first) and the label."""

    layout: object  # atlas_vision.slide.synthetic.TissueLayout
    marks: tuple[tuple[float, float, tuple[int, int, int]], tuple[float, float, tuple[int, int, int]]]
    label: int
    marked_strips: tuple[int, int]


def slide_spec(params: SlideTaskParams, seed: int, index: int) -> SlideSpec:
    """Draw slide ``index`` of the data set ``seed``; labels are balanced (each is drawn with probability 1/2)."""
    from atlas_vision.slide.synthetic import TissueLayout, TissuePiece

    rng = np.random.default_rng([seed, index, 0x511DE])
    s, h = params.strip, params.height
    label = int(rng.integers(0, 2))
    left, right = sorted(int(c) for c in rng.choice(params.columns, size=2, replace=False))
    pieces, marks = [], {}
    for col in range(params.columns):  # every strip: the same distribution relative to the strip
        rx, ry = s * rng.uniform(0.28, 0.36), h * rng.uniform(0.28, 0.36)
        cx, cy = s * (col + 0.5 + rng.uniform(-0.04, 0.04)), h * (0.5 + rng.uniform(-0.04, 0.04))
        amplitudes = rng.uniform(0, 0.2, HARMONICS) / np.arange(1, HARMONICS + 1)
        phases = rng.uniform(0, 2 * math.pi, HARMONICS)
        pieces.append(
            TissuePiece(
                cx, cy, rx, ry, float(rng.uniform(0, math.pi)), tuple(map(float, amplitudes)), tuple(map(float, phases))
            )
        )
        r, a = 0.45 * math.sqrt(rng.uniform()), rng.uniform(0, 2 * math.pi)  # uniform in the inner 45 % disc
        marks[col] = (cx + r * rx * math.cos(a), cy + r * ry * math.sin(a))
    left_colour, right_colour = (BROWN, BLUE) if label == 1 else (BLUE, BROWN)
    return SlideSpec(
        TissueLayout(params.width, params.height, tuple(pieces)),
        ((*marks[left], left_colour), (*marks[right], right_colour)),
        label,
        (left, right),
    )


def write_task_slide(path: str | Path, params: SlideTaskParams, seed: int, index: int, tile_size: int = 256):
    """Write slide ``index`` as a pyramidal JPEG TIFF (levels halve down to <= half the width); returns
    ``(SyntheticSlide, SlideSpec)``."""
    from atlas_vision.slide.synthetic import disc_painter, write_synthetic_slide

    spec = slide_spec(params, seed, index)
    painters = [disc_painter(x, y, params.mark_radius, rgb) for x, y, rgb in spec.marks]
    slide = write_synthetic_slide(
        path,
        params.width,
        params.height,
        mpp=params.mpp,
        seed=seed * 100_003 + index,
        layout=spec.layout,
        painters=painters,
        tile_size=tile_size,
        min_level_side=max(params.width, params.height) // 2,
    )
    return slide, spec
