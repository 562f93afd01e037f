"""``build_datasets``: turn a ``DataConfig`` into train / validation data sets plus what the model needs to know."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

from torch.utils.data import Dataset

from atlas_vision.data.cache import CachedDataset
from atlas_vision.data.config import VOLUME_TASKS, DataConfig
from atlas_vision.data.fake import FakeDataset
from atlas_vision.data.folder import ImageFolderDataset, find_classes
from atlas_vision.data.longrange import LongRangeAuxDataset, LongRangeDataset, LongRangeParams
from atlas_vision.data.pathfinder import PathfinderDataset, pathfinder_preset
from atlas_vision.data.procedural import ProceduralDataset
from atlas_vision.data.transforms import build_transform, describe_transforms

log = logging.getLogger(__name__)

# timm.data.IMAGENET_DEFAULT_MEAN / _STD (repeated here so that importing this module does not import timm)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# 1-channel folder images: the mean of ImageNet's three (timm's convention for in_chans=1); other counts: 0.5 / 0.5
GREY_MEAN: tuple[float] = (0.449,)
GREY_STD: tuple[float] = (0.226,)


def folder_normalisation(in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` the folder task normalises ``in_chans``-channel images with."""
    if in_chans == 3:
        return IMAGENET_MEAN, IMAGENET_STD
    if in_chans == 1:
        return GREY_MEAN, GREY_STD
    return (0.5,) * in_chans, (0.5,) * in_chans


@dataclass
class Datasets:
    """The data of one run.

    Attributes:
        train: training set; items ``(image float32 [in_chans, h, w] normalised with mean/std, label int)``, or
            ``None`` for an unreadable image of a non-strict folder (batch with ``collate_skip_none``).
        val: validation set, same items (evaluation transform, no augmentation).
        num_classes: number of classes.
        in_chans: image channels (1 for pathfinder; folder: ``data.in_chans``, default 3; 3 otherwise).
        class_names: names indexed by label.
        mean: per-channel mean the images were normalised with (``x = (pixel / 255 - mean) / std``).
        std: per-channel standard deviation of that normalisation.
        transforms: the effective preprocessing in one line (:func:`describe_transforms`), to print at start.
        aux_classes: classes of the training set's auxiliary target (0 = none): its items are then
            ``(image, targets int64 [2])`` = ``(label, auxiliary target)``; the validation set keeps plain labels.
    """

    train: Dataset
    val: Dataset
    num_classes: int
    in_chans: int
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    transforms: str = ""
    aux_classes: int = 0


def build_datasets(cfg: DataConfig, seed: int, with_aux_target: bool = False) -> Datasets:
    """Build the train and validation sets of ``cfg.task``.

    Args:
        cfg: the data configuration.
        seed: data seed of the procedural tasks (sample ``i`` of a split is a pure function of it); unused by folder.
        with_aux_target: give the training set its task's auxiliary target where the task has one (``longrange``:
            :class:`~atlas_vision.data.longrange.LongRangeAuxDataset`); other tasks ignore it.

    Returns:
        A ``Datasets``.

    Example:
        >>> data = build_datasets(DataConfig(task="longrange", img_size=(96, 160), train_samples=512), seed=0)
        >>> image, label = data.train[0]     # image: [3, 96, 160] float32, label: 0 or 1
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if cfg.task in VOLUME_TASKS:
        from atlas_vision.data.volume_build import build_volume_datasets

        return build_volume_datasets(cfg, seed)
    if cfg.task == "folder":
        data = _folder(cfg)
        log.info("data transforms: %s", data.transforms)
        return data
    if cfg.task == "slide_features":
        from atlas_vision.slidelearn.data_task import slide_feature_datasets

        return slide_feature_datasets(cfg, seed)
    if cfg.task == "fake":
        fake_train = FakeDataset(cfg.train_samples, "train", seed, cfg.img_size, cfg.fake_classes)
        fake_val = FakeDataset(cfg.val_samples, "val", seed, cfg.img_size, cfg.fake_classes)
        return Datasets(
            fake_train,
            fake_val,
            cfg.fake_classes,
            3,
            fake_train.class_names,
            (0.0,) * 3,
            (1.0,) * 3,
            describe_transforms(cfg),
        )
    with_aux_target = with_aux_target and cfg.task == "longrange"
    if with_aux_target and cfg.cache_dir:
        raise ValueError(
            f"config key 'data.cache_dir' ({cfg.cache_dir!r}) stores images and labels only, not the longrange "
            "task's auxiliary target; drop data.cache_dir or turn the target off with --optim.aux_weight 0"
        )
    train = make_procedural(cfg, "train", seed, cfg.train_samples, with_aux_target)
    val = make_procedural(cfg, "val", seed, cfg.val_samples)
    meta = (len(train.class_names), train.in_chans, train.class_names, train.mean, train.std, describe_transforms(cfg))
    if cfg.cache_dir:
        return Datasets(CachedDataset(train, cfg.cache_dir), CachedDataset(val, cfg.cache_dir), *meta)
    return Datasets(train, val, *meta, aux_classes=LongRangeAuxDataset.aux_classes if with_aux_target else 0)


def make_procedural(
    cfg: DataConfig, split: str, seed: int, num_samples: int, with_aux_target: bool = False
) -> ProceduralDataset:
    """The procedural data set (``longrange`` or ``pathfinder``) of ``cfg`` for one split, without caching;
    ``with_aux_target``: the longrange set with its auxiliary target (:class:`LongRangeAuxDataset`)."""
    if cfg.task == "longrange":
        params = LongRangeParams(img_size=cfg.img_size, object_size=cfg.object_size)
        if cfg.clutter is not None:
            params = replace(params, clutter=cfg.clutter)
        return (LongRangeAuxDataset if with_aux_target else LongRangeDataset)(num_samples, split, seed, params)
    if cfg.task == "pathfinder":
        return PathfinderDataset(num_samples, split, seed, pathfinder_preset(cfg.img_size[0], cfg.contour_length))
    raise ValueError(f"task {cfg.task!r} is not procedural; procedural tasks: longrange, pathfinder")


def _folder(cfg: DataConfig) -> Datasets:
    root = Path(cfg.root or "")
    if not root.is_dir():
        raise FileNotFoundError(
            f"data root {root} does not exist (expected {root}/train/<class> and {root}/val/<class>)"
        )
    classes = find_classes(root / "train")
    val_classes = find_classes(root / "val")
    if val_classes != classes:
        missing, extra = sorted(set(classes) - set(val_classes)), sorted(set(val_classes) - set(classes))
        raise ValueError(
            f"{root}/val must have the same class folders as {root}/train; missing in val: {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}, only in val: {extra[:10]}{' ...' if len(extra) > 10 else ''}"
        )
    in_chans = cfg.channels
    mean, std = folder_normalisation(in_chans)
    datasets = [
        ImageFolderDataset(
            root / split,
            classes,
            build_transform(cfg, split == "train", mean, std),
            cfg.strict,
            in_chans=in_chans,
            convert_channels=cfg.convert_channels,
        )
        for split in ("train", "val")
    ]
    return Datasets(*datasets, len(classes), in_chans, classes, mean, std, describe_transforms(cfg))
