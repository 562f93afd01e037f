"""Registered Atlas variants: each is a config diff plus a preprocessing/pretrained config (timm's ``default_cfg``).

Registering with timm means ``import atlas_vision`` makes ``timm.create_model("atlas_base", ...)`` work, including
``features_only=True`` (timm's feature getter over :meth:`Atlas.forward_intermediates`).
"""

from __future__ import annotations

from functools import partial

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from atlas_vision.models.atlas import Atlas
from atlas_vision.models.config import AtlasConfig
from atlas_vision.models.convert_reference import checkpoint_filter_fn

# Architecture of each variant, as a diff from AtlasConfig's defaults (which are Atlas-B at 1024 px).
VARIANT_CONFIGS: dict[str, AtlasConfig] = {
    # Paper sizes (spec 2.4): Base = 768/12, Small = 384/6; D = {2, 10}, P = 16, K = 16x16, S = 4x4.
    "atlas_base": AtlasConfig(embed_dim=768, num_heads=12, depths=(2, 10)),
    "atlas_small": AtlasConfig(embed_dim=384, num_heads=6, depths=(2, 10)),
    # CPU-sized model for the built-in long-range tasks: patch 8, 4x4-token windows (32x32 px), stride 2.
    # At 64 px: 8x8 tokens in 2x2 windows + a 4x4 global scale; at 256 px: 32x32 -> 16x16 -> 8x8 -> 4x4.
    "atlas_tiny": AtlasConfig(
        embed_dim=64, num_heads=4, depths=(2, 2), patch_size=8, window_size=4, pool_stride=2,
        stem_hidden=16, stem_depth=1, pos_embed_hidden=64,
    ),
    # The same network with window attention only (no cross-scale communication): the control of the default task.
    "atlas_tiny_window": AtlasConfig(
        embed_dim=64, num_heads=4, depths=(2, 2), patch_size=8, window_size=4, pool_stride=2,
        stem_hidden=16, stem_depth=1, pos_embed_hidden=64, communication="single_scale",
    ),
    # Tiny variants for tests (seconds on CPU); they cover patch 4/8/16, max/avg pooling, non-square windows and
    # every communication mode through overrides. (3 stages: timm's generic feature tests expect >= 3 levels.)
    "test_atlas": AtlasConfig(
        embed_dim=32, num_heads=2, depths=(1, 1, 1), patch_size=8, window_size=4, pool_stride=2,
        stem_hidden=8, stem_depth=1, pos_embed_hidden=16,
    ),
    "test_atlas_3stage": AtlasConfig(
        embed_dim=24, num_heads=3, depths=(1, 2, 1), patch_size=4, window_size=(4, 6), pool_stride=2,
        stem_hidden=8, stem_depth=1, pos_embed_hidden=16,
    ),
    "test_atlas_p16": AtlasConfig(
        embed_dim=32, num_heads=4, depths=(2, 1, 1), patch_size=16, window_size=4, pool_stride=2,
        stem_hidden=8, stem_depth=1, pos_embed_hidden=16, pool_op="avg",
    ),
    "test_atlas_window": AtlasConfig(
        embed_dim=32, num_heads=2, depths=(1, 1, 1), patch_size=8, window_size=4, pool_stride=2,
        stem_hidden=8, stem_depth=1, pos_embed_hidden=16, communication="single_scale",
    ),
}


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


def _create(variant: str, pretrained: bool = False, **kwargs) -> Atlas:
    """``pretrained=True`` loads through :func:`checkpoint_filter_fn` (reference or native key names, strict)."""
    num_stages = len(kwargs.get("depths", VARIANT_CONFIGS[variant].depths))
    return build_model_with_cfg(
        partial(Atlas.from_overrides, VARIANT_CONFIGS[variant]),
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=tuple(range(num_stages))),
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
