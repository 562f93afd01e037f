"""The one place that reads a slide's ``features.zarr`` (written by ``atlas-vision slide embed``).

A thin adapter: the slide data set asks for the shape of one stage (metadata only) and for its grid and validity
mask; nothing else in :mod:`atlas_vision.slidelearn` knows the on-disk layout.

Provisional layout (until the reader of the whole-slide subpackage lands): a zarr group with one array
``stage{i}`` ``[C_i, H_i, W_i]`` per stage and ``valid{i}`` ``[H_i, W_i]`` (nonzero = tissue cell computed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

FEATURES_NAME = "features.zarr"


class FeatureGridError(ValueError):
    """A ``features.zarr`` that is missing, unreadable or lacks the requested stage."""


def features_path(root: str | Path, slide_id: str) -> Path:
    """``ROOT/<slide_id>/features.zarr``: where ``slide embed`` writes a slide's features in its run folder."""
    return Path(root) / slide_id / FEATURES_NAME


def _open(path: Path):
    import zarr

    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return zarr.open_group(str(path), mode="r")
    except Exception as err:  # zarr raises several types for a broken store
        raise FeatureGridError(f"{path} is not a readable zarr group: {err}") from err


def _array(group, path: Path, name: str):
    try:
        return group[name]
    except KeyError:
        names = sorted(group.array_keys())
        raise FeatureGridError(f"{path} has no array {name!r}; arrays: {names}") from None


def grid_shape(path: str | Path, stage: int) -> tuple[int, int, int]:
    """``(C, H, W)`` of stage ``stage`` without reading the data."""
    path = Path(path)
    array = _array(_open(path), path, f"stage{stage}")
    if len(array.shape) != 3:
        raise FeatureGridError(f"{path}: stage{stage} must be [C, H, W], got shape {array.shape}")
    return tuple(int(v) for v in array.shape)  # type: ignore[return-value]


def read_grid(path: str | Path, stage: int) -> tuple[np.ndarray, np.ndarray]:
    """Stage ``stage``: features ``float32 [C, H, W]`` and validity mask ``bool [H, W]``."""
    path = Path(path)
    group = _open(path)
    features = np.asarray(_array(group, path, f"stage{stage}")[...], dtype=np.float32)
    valid = np.asarray(_array(group, path, f"valid{stage}")[...]) != 0
    if valid.shape != features.shape[1:]:
        raise FeatureGridError(f"{path}: valid{stage} has shape {valid.shape}, stage{stage} {features.shape}")
    return features, valid


def write_grid(path: str | Path, stages: list[tuple[np.ndarray, np.ndarray]], attrs: dict | None = None) -> Path:
    """Write ``[(features [C, H, W], valid [H, W]), ...]`` in the layout :func:`read_grid` reads (tests, demo)."""
    import zarr

    path = Path(path)
    group = zarr.open_group(str(path), mode="w")
    for i, (features, valid) in enumerate(stages):
        group.create_array(f"stage{i}", data=np.asarray(features, dtype=np.float32))
        group.create_array(f"valid{i}", data=np.asarray(valid, dtype=np.uint8))
    group.attrs.update(attrs or {})
    return path
