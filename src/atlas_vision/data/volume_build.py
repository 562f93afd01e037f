"""Train / validation sets of the 3-D tasks (``longrange3d``, ``volume``) for :func:`atlas_vision.data.build_datasets`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from atlas_vision.data.build import Datasets
from atlas_vision.data.config import VOLUME_TASKS, DataConfig
from atlas_vision.data.longrange3d import LongRange3DDataset, LongRange3DParams
from atlas_vision.data.volume import IntensityWindow, VolumeFolderDataset

__all__ = ["VOLUME_TASKS", "build_volume_datasets", "check_volume_config"]


def longrange3d_params(cfg: DataConfig) -> LongRange3DParams:
    """The generation parameters of the longrange3d task in ``cfg`` (``clutter=None`` keeps the task's default)."""
    params = LongRange3DParams(volume_size=tuple(cfg.volume_size), object_size=cfg.object_size)
    return params if cfg.clutter is None else replace(params, clutter=cfg.clutter)


def check_volume_config(cfg: DataConfig) -> None:
    """Validate the volume fields of ``cfg`` for a 3-D task (ValueError naming field, value and valid range)."""
    size = cfg.volume_size
    if len(size) != 3 or not all(isinstance(s, int) and s >= 4 for s in size):
        raise ValueError(f"volume_size must be (d, h, w) with every side an int >= 4, got {size!r}")
    IntensityWindow(cfg.intensity)
    if cfg.task == "longrange3d":
        longrange3d_params(cfg)
        if cfg.cache_dir:
            raise ValueError("cache_dir is not supported for task='longrange3d' (volumes render in a few ms)")
    if cfg.task == "volume" and not cfg.root:
        raise ValueError("root must be set for task='volume' (a directory with train.csv and val.csv)")


def build_volume_datasets(cfg: DataConfig, seed: int) -> Datasets:
    """The datasets of a 3-D task; items ``(float32 [C, d, h, w], label)``."""
    check_volume_config(cfg)
    size = tuple(cfg.volume_size)
    if cfg.task == "longrange3d":
        params = longrange3d_params(cfg)
        train = LongRange3DDataset(cfg.train_samples, "train", seed, params, cfg.target)
        val = LongRange3DDataset(cfg.val_samples, "val", seed, params, cfg.target)
        return Datasets(train, val, len(train.class_names), 1, train.class_names, train.mean, train.std)
    root = Path(cfg.root or "")
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} does not exist (expected {root}/train.csv and {root}/val.csv)")
    train = VolumeFolderDataset(root, root / "train.csv", None, size, cfg.intensity, train=True, flip=cfg.hflip)
    val = VolumeFolderDataset(root, root / "val.csv", train.class_names, size, cfg.intensity, train=False)
    if val.in_chans != train.in_chans:
        raise ValueError(f"val volumes have {val.in_chans} channel(s), train volumes {train.in_chans}")
    chans = train.in_chans
    return Datasets(train, val, len(train.class_names), chans, train.class_names, (0.0,) * chans, (1.0,) * chans)
