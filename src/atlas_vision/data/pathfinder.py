"""Pathfinder / Path-X (Long Range Arena), written from the published task definition.

Task (Linsley et al. 2018; LRA, Tay et al. 2021): a grey image holds two "target" snakes plus distractor snakes.
A snake is a chain of ``contour_length`` short line segments ("paddles") separated by gaps; each new paddle's
direction is drawn around the previous one with weight ``max(cos(min(continuity * |dθ|, π/2)), 0) ** 2`` among
directions whose pixels are free, and snakes never cross or touch (a dilated occupancy mask).  Two circle markers
are drawn: one at the start of target snake A, the other at the end of A (label 1, "connected") or at the end of the
other target snake B (label 0).  Images are rendered at ``antialias``x and downsampled with Lanczos.

The parameters of the 32/64/128/256 px presets are the LRA table's (``docs/tasks.md``); difficulty is the contour
length: easy 6, intermediate 9, hard 14 paddles.  Distractor snakes have ``contour_length // 3`` paddles.

Units: every length in ``PathfinderParams`` is in output pixels; the generator works on the ``antialias``x canvas.
This is an independent implementation; it reproduces the task definition, not the original images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from atlas_vision.data._snakes import SnakeCanvas, SnakeGeometry, distance_to_segments
from atlas_vision.data.procedural import ProceduralDataset

CLASS_NAMES: list[str] = ["disconnected", "connected"]
_MAX_ATTEMPTS = 100  # sub-seeds tried per image before giving up (never reached in practice)


@dataclass(frozen=True)
class PathfinderParams:
    """Generation parameters (lengths in output pixels).  Build the published ones with ``pathfinder_preset``.

    Attributes:
        size: image side in px (square).
        contour_length: paddles per target snake (6 / 9 / 14 = easy / intermediate / hard).
        distractor_length: paddles per distractor snake.
        num_distractor_snakes: distractor snakes attempted per image.
        paddle_length: length of one paddle.
        paddle_thickness: paddle line width.
        paddle_margins: gap between consecutive paddles, and the minimum clearance between different snakes;
            one value is picked per image.
        marker_radius: radius of the two circle markers.
        seed_distance: distance between the start points of the two target snakes.
        continuity: turning stiffness; a paddle may turn at most ``π / (2 * continuity)`` from the previous one.
        padding: snakes stay this far from the border.
        antialias: render at ``antialias`` x ``size`` and downsample with Lanczos.
        intensity: paddle and marker grey level in (0, 1] (= snake_contrast * paddle_contrast, clipped to 1).
    """

    size: int
    contour_length: int
    distractor_length: int
    num_distractor_snakes: int
    paddle_length: float
    paddle_thickness: float
    paddle_margins: tuple[float, ...]
    marker_radius: float
    seed_distance: float
    continuity: float
    padding: int
    antialias: int = 2
    intensity: float = 1.0


# size -> (padding, margins, paddle_length, thickness, marker_radius, seed_distance, continuity, distractor budget,
#          snake_contrast * paddle_contrast), from the LRA table (long-range-tasks.md, section 2.3)
_PRESETS: dict[int, tuple[int, tuple[float, ...], float, float, float, float, float, int, float]] = {
    32: (1, (1.0,), 2.0, 0.5, 1.5, 7.0, 1.0, 20, 2.0 * 0.75),
    64: (1, (1.0,), 5.0, 1.0, 2.5, 12.0, 1.8, 22, 0.8),
    128: (1, (2.0, 3.0), 5.0, 1.5, 3.0, 20.0, 1.8, 35, 0.9),
    256: (22, (3.0,), 5.0, 2.0, 5.0, 27.0, 1.8, 30, 1.0),
}


def pathfinder_preset(size: int, contour_length: int = 14) -> PathfinderParams:
    """The published LRA parameters for a ``size`` x ``size`` image (32, 64, 128 = Path-X, 256 = Path-256).

    ``distractor_length = contour_length // 3`` and ``num_distractor_snakes = budget // distractor_length`` with
    budget 20 / 22 / 35 / 30 (integer division, as the Python-2 original did).
    """
    if size not in _PRESETS:
        raise ValueError(f"Pathfinder size must be one of {sorted(_PRESETS)}, got {size}")
    if contour_length < 3:
        raise ValueError(f"contour_length must be >= 3, got {contour_length}")
    padding, margins, length, thickness, radius, seed_distance, continuity, budget, contrast = _PRESETS[size]
    distractor_length = contour_length // 3
    return PathfinderParams(
        size=size,
        contour_length=contour_length,
        distractor_length=distractor_length,
        num_distractor_snakes=budget // distractor_length,
        paddle_length=length,
        paddle_thickness=thickness,
        paddle_margins=margins,
        marker_radius=radius,
        seed_distance=seed_distance,
        continuity=continuity,
        padding=padding,
        intensity=min(1.0, contrast),
    )


def _geometry(p: PathfinderParams, margin: float) -> SnakeGeometry:
    a = p.antialias
    return SnakeGeometry(
        side=p.size * a,
        length=p.paddle_length * a,
        margin=margin * a,
        clearance=(p.paddle_thickness + margin) * a,
        border=max(1, math.ceil((p.padding + p.paddle_thickness / 2) * a)),
        continuity=p.continuity,
    )


def _place_snake(canvas: SnakeCanvas, rng: np.random.Generator, n_paddles: int, tries: int) -> np.ndarray | None:
    """Grow a snake of ``n_paddles`` from a random free start, trying up to ``tries`` starts."""
    for start in canvas.random_free_points(rng, tries):
        snake = canvas.grow(rng, start, n_paddles)
        if snake is not None:
            return snake
    return None


@dataclass(frozen=True)
class PathfinderScene:
    """The geometry of one image, in canvas (``antialias``x) pixels.

    Attributes:
        snakes: segments ``[n_paddles, 4]`` (y0, x0, y1, x1) of each snake; ``snakes[0]`` and ``snakes[1]`` are the
            target snakes A and B, the rest distractors.
        markers: centres (y, x) of the two markers: A's start, and the end of A (label 1) or of B (label 0).
        label: 1 if the markers are connected by a snake.
        margin: the paddle margin drawn for this image (output px).
    """

    snakes: list[np.ndarray]
    markers: tuple[tuple[float, float], tuple[float, float]]
    label: int
    margin: float


def layout(p: PathfinderParams, rng: np.random.Generator, label: int) -> PathfinderScene | None:
    """Lay out one image with the given label, or return ``None`` if placement failed (try another stream).

    Order: target snake A from a random start; target snake B from a point ``seed_distance`` away from A's start;
    markers at A's start and at the end of A (label 1) or B (label 0), kept clear of the other target snake; then
    the distractor snakes, which avoid all of these.
    """
    margin = float(p.paddle_margins[int(rng.integers(len(p.paddle_margins)))])
    canvas = SnakeCanvas(_geometry(p, margin))
    a = p.antialias
    snake_a = _place_snake(canvas, rng, p.contour_length, tries=20)
    if snake_a is None:
        return None
    start_a = snake_a[0, :2]
    marker_clearance = (p.marker_radius + p.paddle_thickness / 2 + margin) * a
    canvas.block_disc(start_a[0], start_a[1], marker_clearance)
    snake_b = None
    for phi in rng.uniform(0, 2 * math.pi, size=20):  # B starts seed_distance away from A's start
        start_b = start_a + p.seed_distance * a * np.array([math.sin(phi), math.cos(phi)])
        if canvas.is_free(start_b[0], start_b[1]):
            snake_b = canvas.grow(rng, start_b, p.contour_length)
            if snake_b is not None:
                break
    if snake_b is None:
        return None
    end = snake_a[-1] if label == 1 else snake_b[-1]
    if distance_to_segments(end[2], end[3], snake_b if label == 1 else snake_a) <= marker_clearance:
        return None  # the end marker would touch the other target snake
    canvas.block_disc(end[2], end[3], marker_clearance)
    snakes = [snake_a, snake_b]
    for _ in range(p.num_distractor_snakes):
        snake = _place_snake(canvas, rng, p.distractor_length, tries=8)
        if snake is not None:
            snakes.append(snake)
    markers = ((float(start_a[0]), float(start_a[1])), (float(end[2]), float(end[3])))
    return PathfinderScene(snakes=snakes, markers=markers, label=label, margin=margin)


def draw(p: PathfinderParams, scene: PathfinderScene) -> np.ndarray:
    """Draw paddles and markers on the antialias canvas with PIL, then downsample with Lanczos: ``uint8 [S, S]``."""
    a, side = p.antialias, p.size * p.antialias
    grey = round(255 * p.intensity)
    big = Image.new("L", (side, side), 0)
    pen = ImageDraw.Draw(big)
    width = max(1, round(p.paddle_thickness * a))
    for snake in scene.snakes:
        for y0, x0, y1, x1 in snake.tolist():
            pen.line([(x0, y0), (x1, y1)], fill=grey, width=width)
    r = p.marker_radius * a
    for y, x in scene.markers:
        pen.ellipse([x - r, y - r, x + r, y + r], fill=grey)
    return np.asarray(big.resize((p.size, p.size), Image.Resampling.LANCZOS))


class PathfinderDataset(ProceduralDataset):
    """Pathfinder as a ``Dataset``: ``(image [1, S, S] float32 in [-1, 1], label)``, 1 = the markers are connected.

    Args:
        num_samples: length of the data set.
        split: ``"train"``, ``"val"`` or ``"test"``.
        seed: data seed.
        params: generation parameters, usually ``pathfinder_preset(size, contour_length)``.

    Example:
        >>> ds = PathfinderDataset(1000, "train", seed=0, params=pathfinder_preset(64, contour_length=14))
        >>> image, label = ds[0]        # image: [1, 64, 64]
    """

    task = "pathfinder"
    in_chans = 1
    mean = (0.5,)
    std = (0.5,)

    def __init__(self, num_samples: int, split: str, seed: int, params: PathfinderParams) -> None:
        super().__init__(num_samples, split, seed)
        self.params = params

    @property
    def class_names(self) -> list[str]:
        return list(CLASS_NAMES)

    @property
    def img_size(self) -> tuple[int, int]:
        return (self.params.size, self.params.size)

    def cache_key(self) -> str:
        return f"{super().cache_key()}-cl{self.params.contour_length}-v1"

    def scene(self, index: int) -> PathfinderScene:
        """The geometry of sample ``index`` (retrying deterministically with new sub-seeds if a layout fails)."""
        return self.draw_scene(
            index,
            lambda rng, label: layout(self.params, rng, label),
            _MAX_ATTEMPTS,
            f"pathfinder: no valid image for index {index} after {_MAX_ATTEMPTS} attempts (size {self.params.size}, "
            f"contour_length {self.params.contour_length})",
        )

    def render(self, index: int) -> tuple[np.ndarray, int]:
        scene = self.scene(index)
        return draw(self.params, scene)[:, :, None], scene.label
