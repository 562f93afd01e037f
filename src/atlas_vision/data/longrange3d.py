"""The built-in 3-D long-range task ("longrange3d"): do the two shelled objects have the same intensity?

A grey volume (1 channel, like CT or MRI) holds small solid objects (ball, cube, octahedron) at one of two
intensity levels, amid clutter and voxel noise. Exactly two of them are wrapped in a bright hollow shell
("marked"), and these two lie far apart: their centres are at least ``min_distance`` (default 50 %) of the volume
diagonal apart. All other objects are unmarked clutter of the same kinds. Label 1 ("same") if the two marked
objects have the same intensity level, 0 ("different") otherwise; shapes are irrelevant.

Why it is long-range (the 3-D analogue of ``longrange``, see its module docstring and ``docs/tasks.md``): one marked
object alone says nothing (its level is uniform in both classes), and the label is an XOR-like relation between two
places at least half the diagonal apart -- farther than any two points of one ``D/2 x H/2 x W/2`` block, so a model
that encodes such windows independently and averages their features cannot express it. Clutter levels are i.i.d.
uniform, so global intensity statistics are useless.

Objects sit one per cell of a grid of ``2 * object_size`` voxel cells, at a random offset inside the cell, so they
never overlap. Rendering is numpy stencil pasting: a few ms per 64^3 volume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from atlas_vision.data.config import TARGETS
from atlas_vision.data.procedural import EpochStreamDataset

# Object intensities (class-relevant for the marked pair). Two, one bit per object, as the 2-D task's two colours:
# with four levels the label needs two bits per object compared, and the 2-D default run stalled on a second
# plateau after learning one of them (docs/benchmarks.md sections 6 and 10).
LEVELS: tuple[float, ...] = (0.4, 0.8)
SHAPES_3D: tuple[str, ...] = ("ball", "cube", "octahedron")
BACKGROUND_LEVEL, NOISE_STD, SHELL_LEVEL = 0.08, 0.03, 1.0
CLASS_NAMES: list[str] = ["different", "same"]
# The "count" target: how many of the two marked objects are at the higher level. A sum over the two objects, so a
# window-only model can learn it too; it teaches a model to see the marked objects before it learns to relate them
# (the first stage of the 3-D recipe, docs/tasks.md section 5). Chance: 50 % (counts 0 / 1 / 2 occur 1/4, 1/2, 1/4).
COUNT_CLASS_NAMES: list[str] = ["neither_high", "one_high", "both_high"]
MIN_SIDE, MAX_SIDE = 32, 512
_MAX_ATTEMPTS = 50


def default_object_size_3d(volume_size: tuple[int, int, int]) -> int:
    """Object diameter in voxels: ``round(8 * sqrt(min side / 64))`` (8 at 64^3, 16 at 256^3), at least 6."""
    return max(6, round(8.0 * math.sqrt(min(volume_size) / 64.0)))


@dataclass(frozen=True)
class LongRange3DParams:
    """Generation parameters.

    Attributes:
        volume_size: ``(d, h, w)`` voxels, each side in [32, 512].
        object_size: object diameter in voxels (0 = :func:`default_object_size_3d`).
        min_distance: minimum distance between the marked objects' centres, as a fraction of the diagonal.
        clutter: probability that a free cell holds an unmarked object.
    """

    volume_size: tuple[int, int, int] = (64, 64, 64)
    object_size: int = 0
    min_distance: float = 0.5
    clutter: float = 0.4

    def __post_init__(self) -> None:
        if len(self.volume_size) != 3 or not all(MIN_SIDE <= s <= MAX_SIDE for s in self.volume_size):
            raise ValueError(
                f"volume_size must be (d, h, w) with every side in [{MIN_SIDE}, {MAX_SIDE}] for the longrange3d "
                f"task, got {self.volume_size}"
            )
        if not 0.0 < self.min_distance <= 0.7:
            raise ValueError(f"min_distance must be in (0, 0.7], got {self.min_distance}")
        if not 0.0 <= self.clutter <= 1.0:
            raise ValueError(f"clutter must be in [0, 1], got {self.clutter}")
        if self.size < 6 or self.cell > min(self.volume_size) // 2:
            raise ValueError(
                f"object_size={self.size} does not fit volume_size={self.volume_size}: need 6 <= object_size and "
                f"a cell of 2 * object_size = {self.cell} voxels <= min(d, h, w) / 2"
            )
        reach = math.sqrt(
            sum(((s // self.cell - 1) * self.cell + self.cell - self.footprint) ** 2 for s in self.volume_size)
        )
        need = self.min_distance * math.sqrt(sum(s * s for s in self.volume_size))
        if reach < need:
            raise ValueError(
                f"volume_size={self.volume_size} with object_size={self.size} cannot hold two objects "
                f"{self.min_distance:.0%} of the diagonal ({need:.0f} voxels) apart (at most {reach:.0f}); use a "
                f"larger volume (>= 48 voxels per side) or a smaller object_size"
            )

    @property
    def size(self) -> int:
        return self.object_size or default_object_size_3d(self.volume_size)

    @property
    def footprint(self) -> int:
        """Side of the cube a marked object (object + 1-voxel gap + 1-voxel shell) occupies."""
        return self.size + 4

    @property
    def cell(self) -> int:
        return 2 * self.size


@lru_cache(maxsize=32)
def _shape_stencil(shape: str, size: int) -> np.ndarray:
    """Boolean ``[size, size, size]`` mask of ``shape`` centred in the cube."""
    u = (np.arange(size) + 0.5) / (size / 2.0) - 1.0  # voxel centres in (-1, 1)
    z, y, x = np.meshgrid(u, u, u, indexing="ij")
    if shape == "ball":
        return x * x + y * y + z * z <= 1.0
    if shape == "cube":
        return np.maximum(np.maximum(np.abs(x), np.abs(y)), np.abs(z)) <= 0.75
    if shape == "octahedron":
        return np.abs(x) + np.abs(y) + np.abs(z) <= 1.1
    raise ValueError(f"unknown shape {shape!r}; valid: {SHAPES_3D}")


@lru_cache(maxsize=8)
def _shell_stencil(size: int) -> np.ndarray:
    """Boolean ``[F, F, F]`` hollow sphere around an object of diameter ``size`` (F = size + 4)."""
    side = size + 4
    c = np.arange(side) + 0.5 - side / 2.0
    r = np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
    inner = size / 2.0 + 1.0
    return (r >= inner) & (r <= inner + 1.0)


@dataclass(frozen=True)
class Scene3D:
    """Object corners ``zyx [N, 3]`` (of their footprint cubes), levels ``[N]``, shapes ``[N]``, the marked pair."""

    zyx: np.ndarray
    levels: np.ndarray
    shapes: np.ndarray
    marked: tuple[int, int]
    label: int

    @property
    def high_count(self) -> int:
        """How many of the two marked objects are at the higher level (0, 1 or 2): the ``count`` target."""
        return int(sum(int(self.levels[k]) for k in self.marked))


def make_scene_3d(params: LongRange3DParams, rng: np.random.Generator, label: int) -> Scene3D | None:
    """Lay out one volume with the given label, or ``None`` if no far-apart pair of cells was found."""
    size = np.asarray(params.volume_size)
    cell, foot = params.cell, params.footprint
    grid = size // cell  # cells per axis
    origin = (size - grid * cell) // 2
    index = np.stack(np.unravel_index(np.arange(int(np.prod(grid))), tuple(grid)), axis=1)  # [n, 3]
    zyx = origin + index * cell + rng.integers(0, cell - foot + 1, size=index.shape)
    centres = zyx + foot / 2.0
    min_dist = params.min_distance * float(np.linalg.norm(size))
    n = len(zyx)
    first = second = -1
    for _ in range(8):
        first = int(rng.integers(n))
        far = np.flatnonzero(np.linalg.norm(centres - centres[first], axis=1) >= min_dist)
        if far.size:
            second = int(far[rng.integers(far.size)])
            break
    if second < 0:
        return None
    keep = rng.random(n) < params.clutter
    keep[[first, second]] = True
    order = np.flatnonzero(keep)
    levels = rng.integers(len(LEVELS), size=n)
    level_a = int(rng.integers(len(LEVELS)))
    level_b = level_a if label == 1 else (level_a + 1 + int(rng.integers(len(LEVELS) - 1))) % len(LEVELS)
    levels[first], levels[second] = level_a, level_b
    shapes = rng.integers(len(SHAPES_3D), size=n)
    marked = (int(np.searchsorted(order, first)), int(np.searchsorted(order, second)))
    return Scene3D(zyx=zyx[order], levels=levels[order], shapes=shapes[order], marked=marked, label=label)


def draw_scene_3d(params: LongRange3DParams, scene: Scene3D, rng: np.random.Generator) -> np.ndarray:
    """Render a scene into a ``float32 [D, H, W]`` volume with values in about [0, 1]."""
    s = params.size
    volume = rng.normal(BACKGROUND_LEVEL, NOISE_STD, size=params.volume_size).astype(np.float32)
    for (z, y, x), level, shape in zip(scene.zyx.tolist(), scene.levels.tolist(), scene.shapes.tolist()):
        block = volume[z + 2 : z + 2 + s, y + 2 : y + 2 + s, x + 2 : x + 2 + s]
        block[_shape_stencil(SHAPES_3D[shape], s)] = LEVELS[level]
    shell = _shell_stencil(s)
    for k in scene.marked:
        z, y, x = scene.zyx[k].tolist()
        volume[z : z + shell.shape[0], y : y + shell.shape[1], x : x + shell.shape[2]][shell] = SHELL_LEVEL
    return volume


class LongRange3DDataset(EpochStreamDataset):
    """The longrange3d task: ``(volume [1, D, H, W] float32, (v - 0.5) / 0.5, label in {0, 1})``.

    ``target="count"`` labels the same volumes with :attr:`Scene3D.high_count` (3 classes) instead of same/different.

    Item ``i`` is sample ``epoch * num_samples + i`` of the split's stream, a pure function of
    ``(seed, split, epoch, i)``: workers and runs agree, the data set can have any length, and a training set told
    its epoch (``set_epoch``; the trainer does it) shows new volumes every epoch, as the 2-D procedural tasks do.

    Example:
        >>> ds = LongRange3DDataset(100, "train", seed=0, params=LongRange3DParams(volume_size=(48, 64, 80)))
        >>> volume, label = ds[0]        # volume: [1, 48, 64, 80], label: 0 or 1
    """

    task = "longrange3d"
    in_chans = 1
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)

    def __init__(
        self, num_samples: int, split: str, seed: int, params: LongRange3DParams, target: str = "label"
    ) -> None:
        if target not in TARGETS:
            raise ValueError(f"longrange3d target must be one of {TARGETS}, got {target!r}")
        super().__init__(num_samples, split, seed)
        self.params = params
        self.target = target

    @property
    def class_names(self) -> list[str]:
        return list(COUNT_CLASS_NAMES if self.target == "count" else CLASS_NAMES)

    def render(self, index: int) -> tuple[np.ndarray, int]:
        """``(float32 [D, H, W] volume, target)`` of stream sample ``index`` (the label, or the count)."""

        def lay_out(rng: np.random.Generator, label: int) -> tuple[Scene3D, np.random.Generator] | None:
            scene = make_scene_3d(self.params, rng, label)
            return None if scene is None else (scene, rng)  # the same stream then draws the voxel noise

        scene, rng = self.draw_scene(
            index,
            lay_out,
            attempts=_MAX_ATTEMPTS,
            failure=(
                f"longrange3d: could not place two objects {self.params.min_distance:.0%} of the diagonal apart in "
                f"{_MAX_ATTEMPTS} attempts (volume_size={self.params.volume_size}); use a smaller object_size"
            ),
        )
        return draw_scene_3d(self.params, scene, rng), scene.high_count if self.target == "count" else scene.label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        volume, label = self.render(self.stream_index(index))
        volume = (volume - self.mean[0]) / self.std[0]
        return torch.from_numpy(volume[None]), label  # [1, D, H, W]
