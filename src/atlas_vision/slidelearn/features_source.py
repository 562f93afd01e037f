"""The one place that reads a slide's ``features.zarr`` (written by ``atlas-vision slide embed``).

A thin adapter over :func:`atlas_vision.slide.features.open_features`: the slide data set asks for the shape of
one stage (metadata only) and for its grid and validity mask; nothing else in :mod:`atlas_vision.slidelearn`
knows the on-disk layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FEATURES_NAME = "features.zarr"


class FeatureGridError(ValueError):
    """A ``features.zarr`` that is unreadable or lacks the requested stage."""


def features_path(root: str | Path, slide_id: str) -> Path:
    """``ROOT/<slide_id>/features.zarr``: where ``slide embed`` writes a slide's features in its run folder."""
    return Path(root) / slide_id / FEATURES_NAME


def _stage(path: Path, stage: int):
    from atlas_vision.slide.features import open_features

    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        features = open_features(path)
    except FileNotFoundError:
        raise
    except Exception as err:  # zarr raises several types for a broken store; a missing key is a KeyError
        raise FeatureGridError(f"{path} is not a readable features.zarr: {type(err).__name__}: {err}") from err
    n = len(features.stages)
    if not 0 <= stage < n:
        raise FeatureGridError(f"{path} has stages 0..{n - 1}; data.feature_stage={stage} is out of range")
    return features.stages[stage], features.valid[stage]


def grid_shape(path: str | Path, stage: int) -> tuple[int, int, int]:
    """``(C, H, W)`` of stage ``stage`` without reading the data."""
    grid, _ = _stage(Path(path), stage)
    return tuple(int(v) for v in grid.shape)  # type: ignore[return-value]


def read_grid(path: str | Path, stage: int) -> tuple[np.ndarray, np.ndarray]:
    """Stage ``stage``: features ``float32 [C, H, W]`` and validity mask ``bool [H, W]`` (computed cells)."""
    grid, valid = _stage(Path(path), stage)
    features = np.asarray(grid[...], dtype=np.float32)
    mask = np.asarray(valid[...]) != 0
    if mask.shape != features.shape[1:]:
        raise FeatureGridError(f"{path}: stage{stage} valid mask has shape {mask.shape}, grid {features.shape}")
    return features, mask
