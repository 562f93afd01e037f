"""Image transforms of the folder task at any ``(h, w)``, including non-square sizes, for any ``data.in_chans``.

* ``in_chans`` 1 or 3: timm's PIL pipelines (``create_transform``) on the ``"L"`` / ``"RGB"`` images of
  :mod:`atlas_vision.data.decode`;
* other ``in_chans``: the same geometry on ``float32 [C, H, W]`` tensors (torchvision's tensor ops); colour jitter and
  auto-augment need 1 or 3 channels (``DataConfig`` refuses them otherwise).

:func:`describe_transforms` returns the effective pipeline in one line (printed at the start of training).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image

from atlas_vision.data.config import DataConfig
from atlas_vision.data.decode import DecodedImage, decode_pil

RRC_RATIO: tuple[float, float] = (3 / 4, 4 / 3)  # timm's (ImageNet) RandomResizedCrop aspect-ratio range


def build_transform(
    cfg: DataConfig, is_training: bool, mean: tuple[float, ...], std: tuple[float, ...]
) -> Callable[[DecodedImage], torch.Tensor]:
    """Decoded image (see :mod:`atlas_vision.data.decode`) -> normalised ``float32 [in_chans, h, w]``.

    * training, ``cfg.crop == "random_resized"`` (default, timm's ImageNet recipe): RandomResizedCrop to
      ``cfg.img_size`` (area ``cfg.scale``, aspect ratio 3/4..4/3), horizontal flip ``cfg.hflip``, optional
      ``cfg.auto_augment`` (RandAugment / AugMix / AutoAugment), colour jitter ``cfg.color_jitter`` (0 = off),
      normalisation, random erasing ``cfg.reprob`` (per-pixel noise).
    * training, ``cfg.crop == "whole"``: the whole image resized to exactly ``cfg.img_size`` (aspect ratio not kept,
      nothing cut off), then the same flip / augment / jitter / normalisation / erasing.
    * evaluation: resize to exactly ``cfg.img_size`` (aspect ratio not kept, nothing cropped: timm's "squash" mode
      with crop_pct 1.0, as the Atlas reference evaluates), normalisation.
    """
    if not is_training:
        return build_eval_transform(cfg.img_size, cfg.interpolation, mean, std, in_chans=cfg.channels)
    if cfg.channels not in (1, 3):
        return TensorTrainTransform(cfg, mean, std)
    from timm.data import create_transform  # deferred: timm is slow to import

    h, w = cfg.img_size
    common = {
        "input_size": (cfg.channels, h, w),
        "is_training": True,
        "scale": cfg.scale,
        "ratio": RRC_RATIO,
        "hflip": cfg.hflip,
        "color_jitter": cfg.color_jitter or None,
        "auto_augment": cfg.auto_augment,
        "interpolation": cfg.interpolation,
        "mean": mean,
        "std": std,
        "re_prob": cfg.reprob,
        "re_mode": "pixel",
        "re_count": 1,
    }
    if cfg.crop == "random_resized":
        return _OnDecoded(create_transform(**common), cfg.channels)
    from torchvision import transforms

    _, secondary, final = create_transform(**common, separate=True)
    primary = [_squash(cfg.img_size, cfg.interpolation)]
    if cfg.hflip > 0:
        primary.append(transforms.RandomHorizontalFlip(p=cfg.hflip))
    return _OnDecoded(transforms.Compose([*primary, *secondary.transforms, *final.transforms]), cfg.channels)


def _squash(img_size: tuple[int, int], interpolation: str) -> Callable:
    """Resize the whole image to exactly ``img_size`` (PIL or tensor); ``"random"`` picks bilinear or bicubic."""
    from timm.data.transforms import str_to_interp_mode
    from torchvision import transforms

    if interpolation == "random":
        return transforms.RandomChoice(
            [transforms.Resize(img_size, interpolation=str_to_interp_mode(m)) for m in ("bilinear", "bicubic")]
        )
    return transforms.Resize(img_size, interpolation=str_to_interp_mode(interpolation))


class _OnDecoded:
    """Runs a transform built for mode ``"L"``/``"RGB"`` images; a raw PIL image of another mode is decoded first
    (:func:`decode_pil`: true-range scaling, documented channel conversion).  Picklable (DataLoader workers)."""

    def __init__(self, transform: Callable, in_chans: int) -> None:
        self.transform = transform
        self.in_chans = in_chans
        self.mode = "L" if in_chans == 1 else "RGB"

    def __call__(self, image: DecodedImage) -> torch.Tensor:
        if isinstance(image, Image.Image) and image.mode != self.mode:
            image = decode_pil(image, self.in_chans)
        return self.transform(image)

    def __repr__(self) -> str:
        return repr(self.transform)


class TensorTrainTransform:
    """Training transform for ``float32 [C, H, W]`` images (``in_chans`` not 1 or 3): crop as ``cfg.crop``, flip,
    normalise, random erasing."""

    def __init__(self, cfg: DataConfig, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        from timm.data.random_erasing import RandomErasing
        from timm.data.transforms import str_to_interp_mode
        from torchvision import transforms

        ops: list[Callable] = []
        if cfg.crop == "random_resized":
            interpolation = str_to_interp_mode(cfg.interpolation)
            ops.append(
                transforms.RandomResizedCrop(
                    cfg.img_size, scale=cfg.scale, ratio=RRC_RATIO, interpolation=interpolation
                )
            )
        else:
            ops.append(_squash(cfg.img_size, cfg.interpolation))
        if cfg.hflip > 0:
            ops.append(transforms.RandomHorizontalFlip(p=cfg.hflip))
        ops.append(transforms.Normalize(mean, std))
        if cfg.reprob > 0:
            ops.append(RandomErasing(cfg.reprob, mode="pixel", max_count=1, device="cpu"))
        self.transform = transforms.Compose(ops)

    def __call__(self, image: DecodedImage) -> torch.Tensor:
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"expected a float32 [C, H, W] tensor from atlas_vision.data.decode, got {type(image)}")
        return self.transform(image)


class EvalTransform:
    """Decoded image -> ``float32 [in_chans, h, w]``: resize to exactly ``(h, w)``, normalise.

    For validation and for prediction on image files with the preprocessing a model was trained with (folder or
    procedural task).  A raw PIL image of another mode is decoded first (:func:`decode_pil`).  A plain class (not a
    lambda), so it pickles into DataLoader workers.
    """

    def __init__(
        self,
        img_size: tuple[int, int],
        interpolation: str,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        in_chans: int,
    ) -> None:
        if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
            raise ValueError(f"in_chans must be an int >= 1, got {in_chans!r}")
        if len(mean) != in_chans or len(std) != in_chans:
            raise ValueError(f"mean and std must have in_chans={in_chans} values, got mean={mean}, std={std}")
        self.in_chans = in_chans
        self.mode = "L" if in_chans == 1 else "RGB"
        interpolation = "bicubic" if interpolation == "random" else interpolation
        if in_chans in (1, 3):
            from timm.data import create_transform  # deferred: timm is slow to import

            self.transform = create_transform(
                input_size=(in_chans, *img_size),
                is_training=False,
                interpolation=interpolation,
                mean=mean,
                std=std,
                crop_pct=1.0,
                crop_mode="squash",
            )
        else:
            from torchvision import transforms

            self.transform = transforms.Compose([_squash(img_size, interpolation), transforms.Normalize(mean, std)])

    def __call__(self, image: DecodedImage) -> torch.Tensor:
        if isinstance(image, Image.Image) and (self.in_chans not in (1, 3) or image.mode != self.mode):
            image = decode_pil(image, self.in_chans)
        return self.transform(image)


def build_eval_transform(
    img_size: tuple[int, int], interpolation: str, mean: tuple[float, ...], std: tuple[float, ...], in_chans: int = 3
) -> EvalTransform:
    """See ``EvalTransform``; ``Datasets`` carries the ``mean``, ``std`` and ``in_chans`` to pass."""
    return EvalTransform(img_size, interpolation, mean, std, in_chans)


def describe_transforms(cfg: DataConfig) -> str:
    """The effective preprocessing of ``cfg`` in one line (printed when training starts; documented in
    ``docs/tasks.md``)."""
    h, w = cfg.img_size
    if cfg.task != "folder":
        return f"data.task={cfg.task}: procedural {h}x{w} images, no augmentation (train and val)"
    size = f"{h}x{w}"
    if cfg.crop == "random_resized":
        lo, hi = cfg.scale
        first = (
            f"RandomResizedCrop to {size} (area {lo:g}-{hi:g} of the image, aspect 3/4-4/3, {cfg.interpolation}; "
            "data.crop=whole keeps the whole image)"
        )
    else:
        first = f"whole image resized to {size} (aspect not kept, {cfg.interpolation})"
    steps = [first]
    if cfg.hflip > 0:
        steps.append(f"horizontal flip p={cfg.hflip:g}")
    if cfg.auto_augment:
        steps.append(f"auto-augment {cfg.auto_augment}")
    elif cfg.color_jitter > 0:
        steps.append(f"colour jitter {cfg.color_jitter:g}")
    steps.append("normalise")
    if cfg.reprob > 0:
        steps.append(f"random erasing p={cfg.reprob:g}")
    channels = f"{cfg.channels} channel(s)"
    return f"train: {' + '.join(steps)}; val: whole image resized to {size} + normalise; {channels}"
