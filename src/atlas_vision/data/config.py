"""`DataConfig`: the ``data`` section of the training configuration.

A plain dataclass with simple field types only (str, int, float, bool, 2-tuples, ``str | None``) so that the training
pipeline can load it from YAML and apply dotted command-line overrides.  Every field has a default; the defaults
describe the built-in long-range task at 128 x 128 px, which trains on a CPU in minutes.

Validation happens in ``__post_init__``: every error is a ``ValueError`` naming the field, the value and what is
allowed.  A YAML loader may hand lists instead of tuples; the 2-tuple fields accept any length-2 sequence and store
a tuple.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TASKS: tuple[str, ...] = ("longrange", "pathfinder", "folder", "fake", "slide_features", "longrange3d", "volume")
VOLUME_TASKS: tuple[str, ...] = ("longrange3d", "volume")  # 3-D tasks: see data/volume_build.py
DIFFICULTIES: dict[str, int] = {"easy": 6, "intermediate": 9, "hard": 14}  # Pathfinder contour length (paddles)
PATHFINDER_SIZES: tuple[int, ...] = (32, 64, 128, 256)
LONGRANGE_MIN_SIZE, LONGRANGE_MAX_SIZE = 64, 4096
INTERPOLATIONS: tuple[str, ...] = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos", "random")
# First '-'-separated token of a timm auto-augment string: RandAugment, AugMix or an AutoAugment policy name.
AUTO_AUGMENT_KINDS: tuple[str, ...] = ("rand", "augmix", "original", "originalr", "v0", "v0r", "3a")
CROPS: tuple[str, ...] = ("random_resized", "whole")
TENSOR_INTERPOLATIONS: tuple[str, ...] = ("nearest", "bilinear", "bicubic")  # what resizing a [C, H, W] tensor offers
TASK_CHANNELS: dict[str, int] = {
    "longrange": 3,
    "pathfinder": 1,
    "fake": 3,
    "longrange3d": 1,
}  # procedural tasks: fixed channels
# tasks whose channel count is read from the data (slide feature grids: feature width + 1 mask channel)
DATA_CHANNEL_TASKS: tuple[str, ...] = ("slide_features", "volume")  # volume: the files' channel count
PROCEDURAL_ONLY_KEYS: tuple[str, ...] = (
    "train_samples",
    "val_samples",
    "difficulty",
    "object_size",
    "clutter",
    "fake_classes",
    "cache_dir",
)
FOLDER_ONLY_KEYS: tuple[str, ...] = ("crop", "convert_channels")
TARGETS: tuple[str, ...] = ("label", "count")  # count: longrange3d only (data/longrange3d.py)


@dataclass
class DataConfig:
    """What data to train and evaluate on, and how to load and augment it.

    Attributes:
        task: ``"longrange"`` (default; built-in procedural task whose label needs two far-apart objects, see
            ``docs/tasks.md``), ``"pathfinder"`` (LRA Pathfinder / Path-X, grey, 1 channel), ``"folder"`` (an
            image folder tree at ``root``) or ``"fake"`` (random tensors, for smoke tests).
        img_size: ``(h, w)`` in pixels of the images the model sees.  longrange: any size from 64 to 4096 per
            side, non-square allowed; pathfinder: square 32, 64, 128 or 256 (the published presets); folder and
            fake: any size >= 8.
        train_samples: number of training images of the procedural tasks (longrange, pathfinder, fake).
        val_samples: number of validation images of the procedural tasks.
        difficulty: Pathfinder difficulty: ``"easy"``, ``"intermediate"`` or ``"hard"`` = contour length 6/9/14.
        object_size: longrange object diameter in pixels; 0 picks ``round(12 * sqrt(min(h, w) / 128))``
            (12 px at 128 px, 24 px at 512 px, 48 px at 2048 px), so bigger images are longer-range.
        clutter: longrange and longrange3d: probability that a free grid cell holds an unmarked (distractor)
            object, in [0, 1]; ``None`` (default) = the task's own default (see ``docs/tasks.md``).
        target: ``"label"`` (default: the task's own label) or, for ``longrange3d`` only, ``"count"``: how many of
            the two marked objects are at the higher level (3 classes; window-solvable), the first stage of the
            two-stage 3-D recipe (``docs/tasks.md``, section 5).
        fake_classes: number of classes of the ``fake`` task.
        root: folder task: a directory holding ``train/`` and ``val/``, each with one sub-folder per class.
        interpolation: resize interpolation of the folder transforms (``"bicubic"``, ``"bilinear"``, ...).
        auto_augment: folder task, training only: a timm auto-augment string such as ``"rand-m9-mstd0.5-inc1"``
            (RandAugment), ``"augmix-m5-w4-d2"`` or ``"v0"``; ``None`` disables it.
        reprob: folder task, training only: random-erasing probability (0 disables it).
        hflip: folder task, training only: horizontal-flip probability.
        color_jitter: folder task, training only: colour-jitter strength (0 disables it; timm ignores it when
            ``auto_augment`` is set).
        scale: folder task, training only: ``(min, max)`` area fraction of RandomResizedCrop.
        crop: folder task, training only: ``"random_resized"`` (default, timm's ImageNet RandomResizedCrop with area
            ``scale``, aspect 3/4..4/3, as the paper's HR-IN100 recipe) or ``"whole"`` (the whole image resized to
            ``img_size``: nothing cut off, for labels whose evidence may lie anywhere in the image).
        in_chans: image channels the model is built for.  ``None`` (default) = the task's own: 3 for folder,
            longrange and fake, 1 for pathfinder.  folder: 1 (grey), 3 (RGB) or any N >= 1 (multi-page or
            multi-channel TIFF, or e.g. 4 for RGBA kept with its alpha); see ``docs/tasks.md`` for how each file
            type is read.  Procedural tasks: must be left ``None`` or equal to the task's channels.
        convert_channels: folder task: ``True`` (default) converts grey images to RGB (repeated) when
            ``in_chans=3`` and colour images to grey (luma) when ``in_chans=1``, with one warning per process;
            ``False`` treats such an image as unreadable (skipped, or an error with ``strict``).
        strict: folder task: ``True`` raises on the first unreadable image (naming the file); ``False`` skips it
            (``__getitem__`` returns ``None``; use ``collate_skip_none``) and logs one warning per file.
        num_workers: DataLoader worker processes (0 loads in the main process).
        volume_size: 3-D tasks (``longrange3d``: procedural volumes; ``volume``: NIfTI/.npy files listed in
            ``root/train.csv`` and ``root/val.csv``): ``(d, h, w)`` voxels the model sees (random crop + flips with
            probability ``hflip`` per axis for training, centre crop for evaluation; zero-padded where smaller).
        intensity: ``volume`` task: a CT window (``"ct-soft-tissue"``, ``"ct-lung"``, ``"ct-bone"``, ``"ct-brain"``,
            ``"ct-abdomen"``), ``"LOW,HIGH"`` (clip, map to [-1, 1]), ``"zscore"``, ``"minmax"`` or ``"none"``.
        cache_dir: procedural tasks: if set, every sample is generated once into a ``.npy`` file in this
            directory (keyed by all generation parameters) and read back memory-mapped afterwards; ``None``
            generates on the fly.  Mind the size: ``samples * h * w * channels`` bytes per split.
        labels_csv: slide_features task: the CSV ``slide_id,label[,split]``; ``None`` = ``ROOT/labels.csv``.
            ``root`` holds ``<slide_id>/features.zarr`` and ``img_size`` is the padded grid size in cells (see
            ``docs/slide-learning.md``).
        feature_stage: slide_features task: which stage of ``features.zarr`` to read.
        val_fraction: slide_features task without a ``split`` column: fraction of each class held out for val.
    """

    task: str = "longrange"
    img_size: tuple[int, int] = (128, 128)
    train_samples: int = 4000
    val_samples: int = 1000
    difficulty: str = "hard"
    object_size: int = 0
    clutter: float | None = None
    target: str = "label"
    fake_classes: int = 10
    root: str | None = None
    interpolation: str = "bicubic"
    auto_augment: str | None = None
    reprob: float = 0.0
    hflip: float = 0.5
    color_jitter: float = 0.0
    scale: tuple[float, float] = (0.08, 1.0)
    crop: str = "random_resized"
    in_chans: int | None = None
    convert_channels: bool = True
    strict: bool = False
    num_workers: int = 2
    cache_dir: str | None = None
    labels_csv: str | None = None
    feature_stage: int = 0
    val_fraction: float = 0.2
    volume_size: tuple[int, int, int] = (64, 64, 64)
    intensity: str = "none"

    def __post_init__(self) -> None:
        self.img_size = _pair(self.img_size, "img_size", int)
        self.scale = _pair(self.scale, "scale", float)
        _choice("task", self.task, TASKS)
        _choice("difficulty", self.difficulty, tuple(DIFFICULTIES))
        _choice("interpolation", self.interpolation, INTERPOLATIONS)
        _int_at_least("train_samples", self.train_samples, 1)
        _int_at_least("val_samples", self.val_samples, 1)
        _int_at_least("object_size", self.object_size, 0)
        if self.clutter is not None and not 0.0 <= self.clutter <= 1.0:
            raise ValueError(f"clutter must be in [0, 1] (or None for the task's default), got {self.clutter!r}")
        _choice("target", self.target, TARGETS)
        if self.target != "label" and self.task != "longrange3d":
            raise ValueError(f"target={self.target!r} exists for task='longrange3d' only (task={self.task!r})")
        _int_at_least("fake_classes", self.fake_classes, 2)
        _int_at_least("num_workers", self.num_workers, 0)
        _probability("reprob", self.reprob)
        _probability("hflip", self.hflip)
        if not 0.0 <= self.color_jitter <= 1.0:
            raise ValueError(f"color_jitter must be in [0, 1], got {self.color_jitter!r}")
        lo, hi = self.scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"scale must be (min, max) with 0 < min <= max <= 1, got {self.scale!r}")
        if self.auto_augment is not None and self.auto_augment.split("-")[0] not in AUTO_AUGMENT_KINDS:
            raise ValueError(
                f"auto_augment must be None or a timm auto-augment string starting with one of "
                f"{', '.join(AUTO_AUGMENT_KINDS)} (e.g. 'rand-m9-mstd0.5-inc1'), got {self.auto_augment!r}"
            )
        _choice("crop", self.crop, CROPS)
        if self.convert_channels is not True and self.convert_channels is not False:
            raise ValueError(f"convert_channels must be true or false, got {self.convert_channels!r}")
        if self.in_chans is not None:
            _int_at_least("in_chans", self.in_chans, 1)
        if self.task in VOLUME_TASKS:
            from atlas_vision.data.volume_build import check_volume_config

            self.volume_size = tuple(self.volume_size)
            check_volume_config(self)
            return
        self._check_img_size()
        self._check_task_keys()
        if self.task == "folder" and not self.root:
            raise ValueError("root must be set for task='folder' (a directory with train/ and val/ class folders)")
        if self.task == "slide_features" and not self.root:
            raise ValueError("root must be set for task='slide_features' (a directory of <slide_id>/features.zarr)")
        _int_at_least("feature_stage", self.feature_stage, 0)
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.object_size and self.task == "longrange" and self.object_size > min(self.img_size) // 4:
            raise ValueError(
                f"object_size must be at most min(img_size) // 4 = {min(self.img_size) // 4} for task='longrange' "
                f"with img_size={self.img_size}, got {self.object_size}"
            )

    def _check_img_size(self) -> None:
        h, w = self.img_size
        if self.task == "pathfinder":
            if h != w or h not in PATHFINDER_SIZES:
                raise ValueError(
                    f"img_size must be square and one of {PATHFINDER_SIZES} for task='pathfinder' "
                    f"(the published presets), got {self.img_size}"
                )
        elif self.task == "longrange":
            if not (LONGRANGE_MIN_SIZE <= h <= LONGRANGE_MAX_SIZE and LONGRANGE_MIN_SIZE <= w <= LONGRANGE_MAX_SIZE):
                raise ValueError(
                    f"img_size must have both sides in [{LONGRANGE_MIN_SIZE}, {LONGRANGE_MAX_SIZE}] for "
                    f"task='longrange', got {self.img_size}"
                )
        elif h < 8 or w < 8:
            raise ValueError(f"img_size must have both sides >= 8, got {self.img_size}")

    def _check_task_keys(self) -> None:
        """Keys that do nothing for ``task`` are errors naming the key (a non-default value is a user's intent)."""
        defaults = DataConfig.__dataclass_fields__
        if self.task == "folder":
            for name in PROCEDURAL_ONLY_KEYS:
                if getattr(self, name) != defaults[name].default:
                    raise ValueError(
                        f"{name} = {getattr(self, name)!r} does nothing for task='folder' (the images under "
                        f"data.root are used as they are); remove data.{name}"
                    )
            if self.channels not in (1, 3):
                if self.auto_augment is not None or self.color_jitter > 0:
                    raise ValueError(
                        f"in_chans = {self.channels}: data.auto_augment / data.color_jitter need in_chans 1 or 3 (PIL colour operations), "
                        f"set them to null / 0"
                    )
                if self.interpolation not in TENSOR_INTERPOLATIONS:
                    raise ValueError(
                        f"interpolation = {self.interpolation!r} needs in_chans 1 or 3; for in_chans="
                        f"{self.channels} use one of {', '.join(TENSOR_INTERPOLATIONS)}"
                    )
            return
        for name in FOLDER_ONLY_KEYS:
            if getattr(self, name) != defaults[name].default:
                raise ValueError(f"{name} does nothing for task={self.task!r} (folder task only); remove data.{name}")
        if self.task in DATA_CHANNEL_TASKS:  # features read from files: the procedural knobs do nothing
            for name in PROCEDURAL_ONLY_KEYS:
                if getattr(self, name) != defaults[name].default:
                    raise ValueError(
                        f"{name} = {getattr(self, name)!r} does nothing for task={self.task!r}; remove data.{name}"
                    )
            return
        own = TASK_CHANNELS[self.task]
        if self.in_chans is not None and self.in_chans != own:
            raise ValueError(
                f"in_chans = {self.in_chans} does not match task={self.task!r}, whose images have {own} "
                f"channel(s); leave data.in_chans unset (null)"
            )

    @property
    def channels(self) -> int | None:
        """Image channels of this task: ``in_chans`` if set, else the task's own (3; 1 for pathfinder), or ``None``
        for a task whose channels are read from its files (``slide_features``)."""
        if self.in_chans is not None:
            return self.in_chans
        if self.task in DATA_CHANNEL_TASKS:
            return None
        return TASK_CHANNELS.get(self.task, 3)

    @property
    def input_size(self) -> tuple[int, ...]:
        """Spatial size of the model input: ``volume_size`` for the 3-D tasks, ``img_size`` otherwise."""
        return tuple(self.volume_size) if self.task in VOLUME_TASKS else tuple(self.img_size)

    @property
    def contour_length(self) -> int:
        """Pathfinder contour length (number of paddles of a target snake) of ``difficulty``."""
        return DIFFICULTIES[self.difficulty]


def _pair(value: Any, name: str, kind: type) -> tuple[Any, Any]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(f"{name} must be a pair (a, b), got {value!r}")
    try:
        a, b = (kind(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a pair of {kind.__name__}s, got {value!r}") from err
    if kind is int and (a != value[0] or b != value[1]):
        raise ValueError(f"{name} must be a pair of ints, got {value!r}")
    return (a, b)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}")


def _int_at_least(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _probability(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
