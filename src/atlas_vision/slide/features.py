"""Reading a slide run's ``features.zarr`` (the output contract; see ``docs/slide.md``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class SlideFeatures:
    """A lazily opened ``features.zarr``: nothing is read until an array is sliced.

    Attributes:
        stages: per-stage grids ``[C_i, H_i, W_i]`` (zarr arrays, channel-first).
        valid: per-stage ``[H_i, W_i]`` uint8 arrays, 1 where the cell was computed (tissue), 0 for background.
        attrs: the run's attributes (mpp, level, downsample, region_size, overlap, strides, model, weights_sha256,
            library_version, regions_done, stitch_rule, ...).
        region_embedding: ``[rows, cols, D]`` pooled embedding per region (zarr array).
        region_probs: ``[rows, cols, K]`` class probabilities per region, or ``None``.
    """

    path: Path
    stages: list[Any]
    valid: list[Any]
    attrs: dict[str, Any]
    region_embedding: Any
    region_probs: Any | None

    @property
    def strides(self) -> list[int]:
        return list(self.attrs["strides"])

    def tissue_mask(self, stage: int = -1) -> np.ndarray:
        """``[H_i, W_i]`` boolean: the computed (tissue) cells of ``stage``."""
        return np.asarray(self.valid[stage][...]).astype(bool)

    def cell_coordinates(self, stage: int = -1) -> np.ndarray:
        """``[N, 2]`` level-0 pixel ``(x, y)`` of the top-left corner of each valid cell of ``stage`` (row-major),
        the coordinates tile-based tools (TRIDENT, prov-gigapath) pair with embeddings."""
        rows, cols = np.nonzero(self.tissue_mask(stage))
        s, ds = self.strides[stage], float(self.attrs["downsample"])
        return np.stack([cols * s * ds, rows * s * ds], axis=1)


def open_features(path: str | Path) -> SlideFeatures:
    """Open ``RUN_DIR/<slide_id>/features.zarr`` (or the slide's folder) read-only."""
    import zarr

    path = Path(path)
    if path.is_dir() and (path / "features.zarr").is_dir():
        path = path / "features.zarr"
    if not path.is_dir():
        raise FileNotFoundError(f"no features.zarr at {path}")
    group = zarr.open_group(str(path), mode="r")
    attrs = dict(group.attrs)
    n = len(attrs["strides"])
    return SlideFeatures(
        path=path,
        stages=[group[f"stage{i}"] for i in range(n)],
        valid=[group[f"stage{i}_valid"] for i in range(n)],
        attrs=attrs,
        region_embedding=group["region_embedding"],
        region_probs=group.get("region_probs", None),
    )
