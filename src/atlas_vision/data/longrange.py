"""The built-in long-range task ("longrange"): do the two ringed objects have the same colour?

Each image shows coloured shapes (disc, square, triangle, diamond in red or blue) scattered on a
dark background.  Exactly two of them wear a white ring ("marked"), and these two lie far apart: their centres are
at least ``min_distance`` (default 45 %) of the image diagonal apart.  All other objects are unmarked clutter of the
same kinds.  The label is binary: 1 ("same") if the two marked objects have the same colour, 0 ("different")
otherwise; shapes are random and irrelevant.

Why it is long-range (details and measurements in ``docs/tasks.md``):

* One marked object alone says nothing: its colour is uniform in both classes.  The label is the XOR-like relation
  "colour(A) == colour(B)" between two places at least 45 % of the diagonal apart, so no window with sides up to
  about 45 % of the image side holds both.
* A model that encodes non-overlapping windows independently and then averages their features feeds its head
  ``g(A) + g(B) + clutter``; a linear head on that sum cannot express "same colour" (2 g(a) > t and 2 g(b) > t
  imply g(a) + g(b) > t), so it is at chance.  Only information exchanged between the two windows helps.
* Global statistics are useless: clutter colours are i.i.d. uniform and each colour is equally likely to be
  marked in both classes, so per-channel means and colour histograms have the same distribution under both labels
  up to the tiny "2 of one colour vs 1+1" difference among many clutter objects.

Objects have a fixed size in pixels that grows only as the square root of the image side (12 px at 128 px, 34 px
at 1024 px), so larger images put the two pieces of evidence more object-widths apart.  Any ``(h, w)`` from 64 to
4096 px, square or not.  Rendering is plain numpy stencil pasting: under 1 ms per 128 x 128 image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from atlas_vision.data.procedural import ProceduralDataset, uint8_to_tensor

# Two colours, so "same colour" is one bit per object. With four (red, green, blue, yellow) the default run learnt
# one colour bit (the green channel), answered "same" for red/blue and green/yellow pairs and stayed at 81.6 % for
# 20 epochs on seed 1 -- a second plateau, one per bit (docs/benchmarks.md section 6).
PALETTE: tuple[tuple[int, int, int], ...] = ((220, 50, 50), (60, 100, 235))
COLOUR_NAMES: tuple[str, ...] = ("red", "blue")
SHAPES: tuple[str, ...] = ("disc", "square", "triangle", "diamond")
BACKGROUND: tuple[int, int, int] = (30, 30, 30)
RING: tuple[int, int, int] = (245, 245, 245)
CLASS_NAMES: list[str] = ["different", "same"]
_MAX_ATTEMPTS = 50


def default_object_size(img_size: tuple[int, int]) -> int:
    """Object diameter in px for an image of ``(h, w)``: ``round(12 * sqrt(min(h, w) / 128))``."""
    return max(6, round(12.0 * math.sqrt(min(img_size) / 128.0)))


@dataclass(frozen=True)
class LongRangeParams:
    """Generation parameters of the longrange task.

    Attributes:
        img_size: ``(h, w)`` in pixels.
        object_size: object diameter in px (0 = ``default_object_size(img_size)``).
        min_distance: minimum distance between the two marked objects' centres, as a fraction of the diagonal.
        clutter: probability that a free grid cell holds an unmarked object.
    """

    img_size: tuple[int, int] = (128, 128)
    object_size: int = 0
    min_distance: float = 0.45
    clutter: float = 0.4

    def __post_init__(self) -> None:
        h, w = self.img_size
        if min(h, w) < 32:
            raise ValueError(f"img_size must have both sides >= 32 for the longrange task, got {self.img_size}")
        if not 0.0 < self.min_distance <= 0.7:
            raise ValueError(f"min_distance must be in (0, 0.7], got {self.min_distance}")
        if not 0.0 <= self.clutter <= 1.0:
            raise ValueError(f"clutter must be in [0, 1], got {self.clutter}")
        if self.size < 6 or self.cell > min(h, w) // 2:
            raise ValueError(
                f"object_size={self.size} does not fit img_size={self.img_size}: need 6 <= object_size and a grid "
                f"cell of 2 * object_size = {self.cell} px <= min(h, w) / 2"
            )

    @property
    def size(self) -> int:
        """Object diameter in px."""
        return self.object_size or default_object_size(self.img_size)

    @property
    def ring_gap(self) -> int:
        return max(1, self.size // 8)

    @property
    def ring_width(self) -> int:
        return max(2, self.size // 6)

    @property
    def footprint(self) -> int:
        """Side of the square a marked object (shape + gap + ring) occupies."""
        return self.size + 2 * (self.ring_gap + self.ring_width)

    @property
    def cell(self) -> int:
        """Grid cell side: every object sits at a random position inside its own cell, so objects never overlap."""
        return 2 * self.size


@lru_cache(maxsize=64)
def _shape_stencil(shape: str, size: int) -> np.ndarray:
    """Boolean ``[size, size]`` mask of ``shape`` centred in the square."""
    u = (np.arange(size) + 0.5) / (size / 2.0) - 1.0  # pixel centres in (-1, 1)
    v, u = np.meshgrid(u, u, indexing="ij")  # v: rows (down), u: columns (right)
    if shape == "disc":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "triangle":  # apex up
        return (v >= -0.9) & (v <= 0.85) & (np.abs(u) <= 0.95 * (v + 0.9) / 1.75)
    raise ValueError(f"unknown shape {shape!r}; valid: {SHAPES}")


@lru_cache(maxsize=16)
def _ring_stencil(size: int, gap: int, width: int) -> np.ndarray:
    """Boolean ``[F, F]`` annulus around an object of diameter ``size`` (F = size + 2 * (gap + width))."""
    side = size + 2 * (gap + width)
    c = (np.arange(side) + 0.5) - side / 2.0
    r = np.sqrt(c[:, None] ** 2 + c[None, :] ** 2)
    inner = size / 2.0 + gap
    return (r >= inner) & (r <= inner + width)


@dataclass(frozen=True)
class Scene:
    """The layout of one image: object top-left corners of their footprint squares ``yx [N, 2]``, colours ``[N]``,
    shapes ``[N]`` (indices into PALETTE / SHAPES), and the indices of the two marked objects."""

    yx: np.ndarray
    colours: np.ndarray
    shapes: np.ndarray
    marked: tuple[int, int]
    label: int


def make_scene(params: LongRangeParams, rng: np.random.Generator, label: int) -> Scene | None:
    """Lay out one image with the given label, or ``None`` if no far-apart pair of cells exists for this draw."""
    h, w = params.img_size
    cell, foot = params.cell, params.footprint
    gh, gw = h // cell, w // cell
    oy, ox = (h - gh * cell) // 2, (w - gw * cell) // 2
    iy, ix = np.divmod(np.arange(gh * gw), gw)
    # footprint top-left corners: a random position inside each cell
    yx = np.stack([oy + iy * cell, ox + ix * cell], axis=1) + rng.integers(0, cell - foot + 1, size=(gh * gw, 2))
    centres = yx + foot / 2.0
    min_dist = params.min_distance * math.hypot(h, w)
    first = second = -1
    for _ in range(8):
        first = int(rng.integers(gh * gw))
        far = np.flatnonzero(np.hypot(*(centres - centres[first]).T) >= min_dist)
        if far.size:
            second = int(far[rng.integers(far.size)])
            break
    if second < 0:
        return None
    n = gh * gw
    keep = rng.random(n) < params.clutter
    keep[[first, second]] = True
    order = np.flatnonzero(keep)
    colours = rng.integers(len(PALETTE), size=n)
    colour_a = int(rng.integers(len(PALETTE)))
    colour_b = colour_a if label == 1 else (colour_a + 1 + int(rng.integers(len(PALETTE) - 1))) % len(PALETTE)
    colours[first], colours[second] = colour_a, colour_b
    shapes = rng.integers(len(SHAPES), size=n)
    marked = (int(np.searchsorted(order, first)), int(np.searchsorted(order, second)))
    return Scene(yx=yx[order], colours=colours[order], shapes=shapes[order], marked=marked, label=label)


def draw_scene(params: LongRangeParams, scene: Scene) -> np.ndarray:
    """Render a scene into a ``uint8 [H, W, 3]`` image."""
    h, w = params.img_size
    s, off = params.size, params.ring_gap + params.ring_width
    image = np.empty((h, w, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    for (y, x), colour, shape in zip(scene.yx.tolist(), scene.colours.tolist(), scene.shapes.tolist()):
        patch = image[y + off : y + off + s, x + off : x + off + s]
        patch[_shape_stencil(SHAPES[shape], s)] = PALETTE[colour]
    ring = _ring_stencil(s, params.ring_gap, params.ring_width)
    for k in scene.marked:
        y, x = scene.yx[k].tolist()
        image[y : y + ring.shape[0], x : x + ring.shape[1]][ring] = RING
    return image


class LongRangeDataset(ProceduralDataset):
    """The longrange task as a ``Dataset``: ``(image [3, H, W] float32 in [-1, 1], label in {0, 1})``.

    Args:
        num_samples: length of the data set.
        split: ``"train"``, ``"val"`` or ``"test"``.
        seed: data seed.
        params: generation parameters (image size, object size, ...).

    Example:
        >>> ds = LongRangeDataset(1000, "train", seed=0, params=LongRangeParams(img_size=(96, 160)))
        >>> image, label = ds[3]          # image: [3, 96, 160], label: 0 or 1
    """

    task = "longrange"
    in_chans = 3

    def __init__(self, num_samples: int, split: str, seed: int, params: LongRangeParams) -> None:
        super().__init__(num_samples, split, seed)
        self.params = params

    @property
    def class_names(self) -> list[str]:
        return list(CLASS_NAMES)

    @property
    def img_size(self) -> tuple[int, int]:
        return self.params.img_size

    def cache_key(self) -> str:
        p = self.params
        return f"{super().cache_key()}-obj{p.size}-dist{p.min_distance}-clut{p.clutter}-v2"  # v2: two colours

    def scene(self, index: int) -> Scene:
        """The layout of sample ``index`` (retrying deterministically with new sub-seeds if a draw fails)."""
        return self.draw_scene(
            index,
            lambda rng, label: make_scene(self.params, rng, label),
            _MAX_ATTEMPTS,
            f"longrange: could not place two objects {self.params.min_distance:.0%} of the diagonal apart in "
            f"{_MAX_ATTEMPTS} attempts (img_size={self.params.img_size}, object_size={self.params.size}); "
            "use a smaller object_size",
        )

    def render(self, index: int) -> tuple[np.ndarray, int]:
        scene = self.scene(index)
        return draw_scene(self.params, scene), scene.label


class LongRangeAuxDataset(LongRangeDataset):
    """The longrange task with its auxiliary target: items ``(image [3, H, W], targets int64 [2])`` where
    ``targets = (label, marked_red_count(scene))``.

    The trainer adds a cross-entropy loss on the second column (:mod:`atlas_vision.train.aux_head`): a first-order
    reason to keep the colours of the ringed objects in the pooled features, which a run stuck at chance otherwise
    loses (``docs/benchmarks.md`` section 6).  It does not give away the label: "same" is "count != 1", which a
    linear head on pooled features cannot read off a linear count (logistic regression on the count alone has zero
    slope, by the symmetry ``count -> 2 - count``), so a window-only model stays at chance with it too.
    """

    #: Classes of the auxiliary target: 0, 1 or 2 of the ringed objects are red.
    aux_classes = 3

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        scene = self.scene(self.stream_index(index))
        image = uint8_to_tensor(draw_scene(self.params, scene), self.mean, self.std)
        return image, torch.tensor([scene.label, marked_red_count(scene)], dtype=torch.int64)


def marked_red_count(scene: Scene) -> int:
    """How many of the two ringed objects of ``scene`` are red: 0, 1 or 2 (the label is "same" iff not 1)."""
    return int((scene.colours[list(scene.marked)] == COLOUR_NAMES.index("red")).sum())
