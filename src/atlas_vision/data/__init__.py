"""Data for Atlas: procedural long-range tasks, Pathfinder, image folders, HR-IN100.

Public API::

    DataConfig                         # the ``data`` section of the training config (dataclass, YAML-friendly)
    build_datasets(cfg, seed) -> Datasets(train, val, num_classes, in_chans, class_names, mean, std)
    collate_skip_none(batch) -> (images, labels, n_skipped)
    set_dataset_epoch(dataset, epoch)  # fresh procedural training samples every epoch (call before iterating)
    build_eval_transform(img_size, interpolation, mean, std, in_chans)   # preprocessing for prediction
    read_image(path, in_chans, convert_channels) -> PIL "L"/"RGB" image or float32 [C, H, W]  (true-range scaling)
    describe_transforms(cfg) -> str                                      # the effective pipeline, one line

Tasks are described in ``docs/tasks.md``.
"""

from atlas_vision.data.build import Datasets, build_datasets
from atlas_vision.data.collate import collate_skip_none
from atlas_vision.data.config import DataConfig
from atlas_vision.data.decode import ChannelMismatchError, read_image
from atlas_vision.data.folder import UnreadableImageError
from atlas_vision.data.procedural import set_dataset_epoch
from atlas_vision.data.transforms import build_eval_transform, describe_transforms

__all__ = [
    "ChannelMismatchError",
    "DataConfig",
    "Datasets",
    "UnreadableImageError",
    "build_datasets",
    "build_eval_transform",
    "collate_skip_none",
    "describe_transforms",
    "read_image",
    "set_dataset_epoch",
]
