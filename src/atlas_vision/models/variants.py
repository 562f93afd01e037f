"""Registered Atlas variants: each is a config diff plus a preprocessing/pretrained config (timm's ``default_cfg``).

This module imports only timm at import time (the model code is imported when a model is built), so it can run
from the post-import hook of :mod:`atlas_vision._timm_registration` while ``atlas_vision.models`` is still being
imported.  Registering with timm means ``import atlas_vision`` makes ``timm.create_model("atlas_base", ...)`` work, including
``features_only=True`` (timm's feature getter over :meth:`Atlas.forward_intermediates`).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from atlas_vision.models.names import VARIANT_NAMES

if TYPE_CHECKING:
    from atlas_vision.models.atlas import Atlas


def _cfg(input_size: tuple[int, int, int], **extra) -> dict:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": input_size,
        "pool_size": None,
        "crop_pct": 1.0,
        "interpolation": "bicubic",
        "fixed_input_size": False,
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.conv0.0",
        "classifier": "head",
        "license": "apache-2.0",
        **extra,
    }


default_cfgs = generate_default_cfgs(
    {
        # Where users will look for the authors' HR-IN100 weights (100 classes; reference key names, converted on
        # load by checkpoint_filter_fn). Nothing is published under these ids yet (docs/weights.md): use
        # pretrained_cfg_overlay=dict(file=PATH) for a local file, or "local-dir:" / "hf-hub:" for a hub folder.
        "atlas_base.hr_in100_r1024": _cfg(
            (3, 1024, 1024), num_classes=100, hf_hub_id="YalaLab/atlas_base.hr_in100_r1024"
        ),
        "atlas_small.hr_in100_r1024": _cfg(
            (3, 1024, 1024), num_classes=100, hf_hub_id="YalaLab/atlas_small.hr_in100_r1024"
        ),
        # "name.*" after the tagged ones: the untagged cfg (1000 classes, no weights) stays the default
        "atlas_base.*": _cfg((3, 1024, 1024)),
        "atlas_small.*": _cfg((3, 1024, 1024)),
        "atlas_tiny": _cfg((3, 64, 64), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        "atlas_tiny_window": _cfg((3, 64, 64), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        "test_atlas": _cfg((3, 64, 64)),
        "test_atlas_3stage": _cfg((3, 64, 48)),
        "test_atlas_p16": _cfg((3, 96, 96)),
        "test_atlas_window": _cfg((3, 64, 64)),
    }
)


if set(default_cfgs) != set(VARIANT_NAMES):
    raise RuntimeError(f"default_cfgs {sorted(default_cfgs)} must cover exactly VARIANT_NAMES {VARIANT_NAMES}")


def _create(variant: str, pretrained: bool = False, **kwargs) -> Atlas:
    """``pretrained=True`` loads through :func:`checkpoint_filter_fn` (reference or native key names, strict)."""
    from atlas_vision.models.atlas import Atlas  # deferred: registration must not import the model code
    from atlas_vision.models.convert_reference import checkpoint_filter_fn
    from atlas_vision.models.features import check_out_indices
    from atlas_vision.models.variant_configs import VARIANT_CONFIGS

    num_stages = len(kwargs.get("depths", VARIANT_CONFIGS[variant].depths))
    if kwargs.get("features_only") and "out_indices" in kwargs:
        kwargs["out_indices"] = check_out_indices(kwargs["out_indices"], num_stages)
    return build_model_with_cfg(
        partial(Atlas.from_overrides, VARIANT_CONFIGS[variant]),
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg={"feature_cls": "getter", "out_indices": tuple(range(num_stages))},
        **kwargs,
    )


@register_model
def atlas_base(pretrained: bool = False, **kwargs) -> Atlas:
    """Atlas-B/16 (768 dim, 12 heads, D = {2, 10}); 118.25M parameters with 100 classes."""
    return _create("atlas_base", pretrained, **kwargs)


@register_model
def atlas_small(pretrained: bool = False, **kwargs) -> Atlas:
    """Atlas-S/16 (384 dim, 6 heads, D = {2, 10})."""
    return _create("atlas_small", pretrained, **kwargs)


@register_model
def atlas_tiny(pretrained: bool = False, **kwargs) -> Atlas:
    """CPU-sized Atlas (64 dim, 4 heads, D = {2, 2}, patch 8, 4x4-token windows, stride 2) for the built-in tasks."""
    return _create("atlas_tiny", pretrained, **kwargs)


@register_model
def atlas_tiny_window(pretrained: bool = False, **kwargs) -> Atlas:
    """``atlas_tiny`` with window attention only (single scale): the no-communication control."""
    return _create("atlas_tiny_window", pretrained, **kwargs)


@register_model
def test_atlas(pretrained: bool = False, **kwargs) -> Atlas:
    return _create("test_atlas", pretrained, **kwargs)


@register_model
def test_atlas_3stage(pretrained: bool = False, **kwargs) -> Atlas:
    return _create("test_atlas_3stage", pretrained, **kwargs)


@register_model
def test_atlas_p16(pretrained: bool = False, **kwargs) -> Atlas:
    return _create("test_atlas_p16", pretrained, **kwargs)


@register_model
def test_atlas_window(pretrained: bool = False, **kwargs) -> Atlas:
    return _create("test_atlas_window", pretrained, **kwargs)
