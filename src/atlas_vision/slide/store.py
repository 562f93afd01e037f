"""``features.zarr``: the per-stage feature grids of a slide (the output contract is in ``docs/slide.md``).

Layout of the zarr (v3) group:

* ``stage{i}``        ``[C_i, H_i, W_i]`` float16 (default) or float32 - stage ``i``'s features, cell ``(r, c)``
  covering target px ``[r * s_i, (r + 1) * s_i) x [c * s_i, (c + 1) * s_i)`` (``s_i`` = ``attrs["strides"][i]``);
* ``stage{i}_valid``  ``[H_i, W_i]`` uint8 - 1 where the cell was computed, 0 for background (never written: the
  fill value, no chunk on disk);
* ``region_embedding`` ``[rows, cols, D]`` float32 - the model's pooled embedding of each region (0 if not done);
* ``region_probs``     ``[rows, cols, K]`` float32 - class probabilities per region (classifier checkpoints only).

Chunks: one region's owned square per chunk at every stage (``[C_i, step / s_i, step / s_i]``), so the writes of
different regions (and of different processes) never touch the same chunk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from atlas_vision.slide.errors import SlideError
from atlas_vision.slide.regions import Region, RegionGrid

DTYPES = ("float16", "float32")


class FeatureStore:
    """Writer of one slide's ``features.zarr``."""

    def __init__(self, group, grid: RegionGrid, strides: tuple[int, ...], dtype: str):
        self.group = group
        self.grid = grid
        self.strides = strides
        self.dtype = np.dtype(dtype)

    @classmethod
    def create(
        cls,
        path: Path,
        grid: RegionGrid,
        strides: tuple[int, ...],
        channels: tuple[int, ...],
        embed_dim: int,
        num_classes: int,
        dtype: str,
        attrs: dict,
        max_chunk: int | None = None,
    ) -> FeatureStore:
        """Create an empty store. ``max_chunk`` caps the chunk side in cells: only for a single writer (exact
        mode), since it breaks the one-region-per-chunk alignment."""
        import zarr

        if dtype not in DTYPES:
            raise SlideError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        for i, (stride, c) in enumerate(zip(strides, channels)):
            h, w = grid.stage_shape(stride)
            cell = max(1, grid.step // stride)
            cell = min(cell, max_chunk) if max_chunk else cell
            group.create_array(f"stage{i}", shape=(c, h, w), chunks=(c, cell, cell), dtype=dtype, fill_value=0)
            group.create_array(f"stage{i}_valid", shape=(h, w), chunks=(cell, cell), dtype="uint8", fill_value=0)
        group.create_array(
            "region_embedding",
            shape=(grid.rows, grid.cols, embed_dim),
            chunks=(1, 1, embed_dim),
            dtype="float32",
            fill_value=0,
        )
        if num_classes:
            group.create_array(
                "region_probs",
                shape=(grid.rows, grid.cols, num_classes),
                chunks=(1, 1, num_classes),
                dtype="float32",
                fill_value=0,
            )
        group.attrs.update(attrs)
        return cls(group, grid, strides, dtype)

    @classmethod
    def open(cls, path: Path, grid: RegionGrid, strides: tuple[int, ...], dtype: str) -> FeatureStore:
        import zarr

        return cls(zarr.open_group(str(path), mode="r+"), grid, strides, dtype)

    def write_region(
        self, region: Region, maps: list[np.ndarray], embedding: np.ndarray, probs: np.ndarray | None
    ) -> None:
        """Store one region's owned cells (``maps[i]``: ``[C_i, R / s_i, R / s_i]``) and its embedding."""
        stored = []
        for m, stride in zip(maps, self.strides):
            rows, cols, mrows, mcols = self.grid.cells(region, stride)
            block = m[:, mrows, mcols].astype(self.dtype)
            if not np.isfinite(block).all():
                raise SlideError(
                    f"region {region.index} (row {region.row}, col {region.col}): features overflow {self.dtype} "
                    f"(max |x| = {np.abs(m).max():.3g}); use --dtype float32"
                )
            stored.append((rows, cols, block))
        for i, (rows, cols, block) in enumerate(stored):
            self.group[f"stage{i}"][:, rows, cols] = block
            self.group[f"stage{i}_valid"][rows, cols] = 1
        self.group["region_embedding"][region.row, region.col] = embedding.astype(np.float32)
        if probs is not None:
            self.group["region_probs"][region.row, region.col] = probs.astype(np.float32)
