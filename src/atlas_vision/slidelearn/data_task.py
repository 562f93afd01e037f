"""``data.task: slide_features`` -> the training pipeline's ``Datasets`` (called by ``data.build_datasets``)."""

from __future__ import annotations

from atlas_vision.data.build import Datasets
from atlas_vision.data.config import DataConfig
from atlas_vision.slidelearn.dataset import build_slide_splits


def slide_feature_datasets(cfg: DataConfig, seed: int) -> Datasets:
    """Train/val slide sets of ``cfg`` (``root``, ``labels_csv``, ``feature_stage``, ``img_size`` = padded grid,
    ``val_fraction``); ``in_chans`` = feature channels + 1 mask channel; identity mean/std."""
    splits = build_slide_splits(cfg.root or "", cfg.labels_csv, cfg.feature_stage, cfg.img_size, cfg.val_fraction, seed)
    n = splits.in_chans
    return Datasets(splits.train, splits.val, len(splits.class_names), n, splits.class_names, (0.0,) * n, (1.0,) * n)
