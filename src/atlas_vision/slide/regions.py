"""The region plan: square regions of ``region_size`` target px on a regular grid, overlapping by ``overlap``.

Stitch rule (centre crop, every feature cell written by exactly one region): with ``step = region_size - overlap``,
region ``(row, col)`` reads the target-pixel square starting at ``(col * step - overlap / 2, row * step - overlap / 2)``
(pixels outside the slide are white) and *owns* the central ``step x step`` square
``[col * step, (col + 1) * step) x [row * step, (row + 1) * step)`` (clipped to the slide). Only the feature cells of
the owned square are stored, so each cell sees at least ``overlap / 2`` px of context on every side that has
neighbours, and regions never write the same cell - which makes resume and multi-process runs exact and lets each
region be one zarr chunk per stage.

Validity: ``overlap / 2`` and ``step`` must be multiples of the model's largest stage stride, so region borders fall
on feature-cell borders at every stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from atlas_vision.slide.errors import SlideError


@dataclass(frozen=True)
class Region:
    index: int
    row: int
    col: int
    x: int  # read origin (target px, may be negative)
    y: int
    size: int  # read side (target px)
    owned: tuple[int, int, int, int]  # (x0, y0, x1, y1) target px, inside the slide


@dataclass(frozen=True)
class RegionGrid:
    width: int
    height: int
    region_size: int
    overlap: int

    @property
    def step(self) -> int:
        return self.region_size - self.overlap

    @property
    def rows(self) -> int:
        return math.ceil(self.height / self.step)

    @property
    def cols(self) -> int:
        return math.ceil(self.width / self.step)

    def __len__(self) -> int:
        return self.rows * self.cols

    def region(self, index: int) -> Region:
        if not 0 <= index < len(self):
            raise IndexError(f"region {index} out of range 0..{len(self) - 1}")
        row, col = divmod(index, self.cols)
        s, half = self.step, self.overlap // 2
        owned = (col * s, row * s, min((col + 1) * s, self.width), min((row + 1) * s, self.height))
        return Region(index, row, col, col * s - half, row * s - half, self.region_size, owned)

    def stage_shape(self, stride: int) -> tuple[int, int]:
        """``(H_s, W_s)`` of a stage grid with ``stride`` target px per cell."""
        return math.ceil(self.height / stride), math.ceil(self.width / stride)

    def cells(self, region: Region, stride: int) -> tuple[slice, slice, slice, slice]:
        """``(rows, cols)`` of the stage grid owned by ``region`` and the matching ``(rows, cols)`` of its map."""
        x0, y0, x1, y1 = region.owned
        half = self.overlap // 2 // stride
        r0, c0 = y0 // stride, x0 // stride
        r1, c1 = math.ceil(y1 / stride), math.ceil(x1 / stride)
        return slice(r0, r1), slice(c0, c1), slice(half, half + r1 - r0), slice(half, half + c1 - c0)

    def tissue_regions(self, mask: np.ndarray, target_to_mask: tuple[float, float], min_tissue: float) -> list[int]:
        """Indices of the regions whose owned square has a tissue fraction ``> min_tissue`` in ``mask``
        (``target_to_mask = (sx, sy)``: mask pixels per target pixel)."""
        sx, sy = target_to_mask
        mh, mw = mask.shape
        keep = []
        for index in range(len(self)):
            x0, y0, x1, y1 = self.region(index).owned
            cx0, cy0 = min(int(x0 * sx), mw - 1), min(int(y0 * sy), mh - 1)
            cx1, cy1 = max(cx0 + 1, math.ceil(x1 * sx)), max(cy0 + 1, math.ceil(y1 * sy))
            patch = mask[cy0:cy1, cx0:cx1]
            if patch.size and (patch.mean() > min_tissue if min_tissue > 0 else patch.any()):
                keep.append(index)
        return keep


def check_region_geometry(region_size: int, overlap: int, max_stride: int) -> None:
    """Raise a :class:`SlideError` naming valid values unless the stitch rule's divisibility holds."""
    if not isinstance(region_size, int) or region_size <= 0:
        raise SlideError(f"--region-size must be a positive integer, got {region_size!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < region_size:
        raise SlideError(f"--overlap must be in 0..{region_size - 1} (below --region-size), got {overlap!r}")
    unit = 2 * max_stride
    if overlap % unit:
        below, above = overlap // unit * unit, (overlap // unit + 1) * unit
        raise SlideError(
            f"--overlap {overlap} must be a multiple of {unit} (twice the model's largest stage stride {max_stride}, "
            f"so half the overlap falls on feature cells); nearest valid: {below} or {above}"
        )
    step = region_size - overlap
    if step % max_stride:
        below = max(max_stride, step // max_stride * max_stride) + overlap
        raise SlideError(
            f"--region-size {region_size} minus --overlap {overlap} = {step} must be a multiple of the model's largest "
            f"stage stride {max_stride}; nearest valid region sizes: {below} or {below + max_stride}"
        )
