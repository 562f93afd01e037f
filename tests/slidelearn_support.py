"""Test helper: write a minimal ``features.zarr`` in the layout of ``atlas_vision.slide.store`` (what
``slide embed`` writes and ``atlas_vision.slide.features.open_features`` reads), without running a backbone."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_grid(path: str | Path, stages: list[tuple[np.ndarray, np.ndarray]]) -> Path:
    """``[(features [C, H, W], valid [H, W]), ...]`` -> ``path`` (a zarr v3 group)."""
    import zarr

    path = Path(path)
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    for i, (features, valid) in enumerate(stages):
        group.create_array(f"stage{i}", data=np.asarray(features, dtype=np.float16))
        group.create_array(f"stage{i}_valid", data=np.asarray(valid, dtype=np.uint8))
    group.create_array("region_embedding", data=np.zeros((1, 1, 4), dtype=np.float32))
    group.attrs.update({"strides": [8 * 2**i for i in range(len(stages))], "downsample": 1.0})
    return path
