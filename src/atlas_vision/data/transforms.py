"""Image transforms: timm's training / evaluation pipelines at any ``(h, w)``, including non-square sizes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from PIL import Image

from atlas_vision.data.config import DataConfig


def build_transform(
    cfg: DataConfig, is_training: bool, mean: tuple[float, ...], std: tuple[float, ...]
) -> Callable[[Image.Image], torch.Tensor]:
    """timm's ``create_transform`` for the folder task: PIL image -> normalised ``float32 [3, h, w]``.

    * training: RandomResizedCrop to ``cfg.img_size`` (area ``cfg.scale``, aspect ratio 3/4..4/3),
      horizontal flip ``cfg.hflip``, optional ``cfg.auto_augment`` (RandAugment / AugMix / AutoAugment),
      colour jitter ``cfg.color_jitter`` (0 = off), normalisation, random erasing ``cfg.reprob`` (per-pixel noise).
    * evaluation: resize to exactly ``cfg.img_size`` (aspect ratio not kept, nothing cropped: timm's "squash" mode
      with crop_pct 1.0, as the Atlas reference evaluates), normalisation.
    """
    from timm.data import create_transform  # deferred: timm is slow to import

    h, w = cfg.img_size
    if is_training:
        return create_transform(
            input_size=(3, h, w),
            is_training=True,
            scale=cfg.scale,
            hflip=cfg.hflip,
            color_jitter=cfg.color_jitter or None,
            auto_augment=cfg.auto_augment,
            interpolation=cfg.interpolation,
            mean=mean,
            std=std,
            re_prob=cfg.reprob,
            re_mode="pixel",
            re_count=1,
        )
    return build_eval_transform(cfg.img_size, cfg.interpolation, mean, std, in_chans=3)


class EvalTransform:
    """Any PIL image -> ``float32 [in_chans, h, w]``: convert to RGB / grey, resize to exactly ``(h, w)``, normalise.

    For prediction on image files with the preprocessing a model was trained with (folder or procedural task).
    A plain class (not a lambda), so it pickles into DataLoader workers.
    """

    def __init__(
        self,
        img_size: tuple[int, int],
        interpolation: str,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        in_chans: int,
    ) -> None:
        if in_chans not in (1, 3) or len(mean) != in_chans or len(std) != in_chans:
            raise ValueError(
                f"in_chans must be 1 or 3 with mean/std of that length, got {in_chans}, mean={mean}, std={std}"
            )
        from timm.data import create_transform  # deferred: timm is slow to import

        self.mode = "L" if in_chans == 1 else "RGB"
        self.transform = create_transform(
            input_size=(in_chans, *img_size),
            is_training=False,
            interpolation="bicubic" if interpolation == "random" else interpolation,
            mean=mean,
            std=std,
            crop_pct=1.0,
            crop_mode="squash",
        )

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.transform(image.convert(self.mode))


def build_eval_transform(
    img_size: tuple[int, int], interpolation: str, mean: tuple[float, ...], std: tuple[float, ...], in_chans: int = 3
) -> EvalTransform:
    """See ``EvalTransform``; ``Datasets`` carries the ``mean``, ``std`` and ``in_chans`` to pass."""
    return EvalTransform(img_size, interpolation, mean, std, in_chans)
