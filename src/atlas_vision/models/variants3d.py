"""Registered Atlas-3D variants (timm): each is an :class:`Atlas3DConfig` diff plus a default config.

``import atlas_vision`` makes ``timm.create_model("atlas3d_small", in_chans=1, num_classes=2)`` work, including
``features_only=True`` (timm's feature getter over :meth:`Atlas3D.forward_intermediates`, NCDHW maps).

Geometry of the paper-sized variants: patch 16, windows of 8x8x8 = 512 tokens, stride 2 (8 fine windows per coarse
window, K/S = 4 per axis as in the 2-D models' 16/4). A 512^3 CT volume is 32^3 tokens -> 16^3 -> 8^3 (one window).
"""

from __future__ import annotations

from functools import partial

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from atlas_vision.models.atlas3d import Atlas3D, Atlas3DConfig

_TINY = {
    "embed_dim": 64, "num_heads": 4, "depths": (2, 2), "patch_size": 8, "window_size": 4, "pool_stride": 2,
    "stem_hidden": 16, "stem_depth": 1, "pos_embed_hidden": 64, "head_norm": "batch",
}  # fmt: skip
_TEST = {
    "embed_dim": 32, "num_heads": 2, "depths": (1, 1, 1), "patch_size": 4, "window_size": 4, "pool_stride": 2,
    "stem_hidden": 8, "stem_depth": 1, "pos_embed_hidden": 16,
}  # fmt: skip

VARIANT_CONFIGS_3D: dict[str, Atlas3DConfig] = {
    "atlas3d_base": Atlas3DConfig(embed_dim=768, num_heads=12, depths=(2, 10)),
    "atlas3d_small": Atlas3DConfig(embed_dim=384, num_heads=6, depths=(2, 10)),
    # CPU-sized: patch 8, 4x4x4-token windows (32^3 voxels), stride 2; at 64^3 voxels: 8^3 tokens in 2x2x2 windows
    # + a 4^3 global scale. The built-in 3-D long-range task uses it.
    "atlas3d_tiny": Atlas3DConfig(**_TINY),
    "atlas3d_tiny_window": Atlas3DConfig(**_TINY, communication="single_scale"),  # window-only control
    # test variants (seconds on CPU): isotropic patch 4; anisotropic patch/window/stride; window-only
    "test3d_atlas": Atlas3DConfig(**_TEST),
    "test3d_atlas_aniso": Atlas3DConfig(
        embed_dim=24,
        num_heads=3,
        depths=(1, 2),
        patch_size=(4, 8, 8),
        window_size=(2, 4, 4),
        pool_stride=(2, 2, 4),
        stem_hidden=8,
        stem_depth=1,
        pos_embed_hidden=16,
    ),
    "test3d_atlas_window": Atlas3DConfig(**_TEST, communication="single_scale"),
}


# Suggested volume (C, D, H, W) per variant. timm's ``input_size`` is a 3-tuple (C, H, W) by contract, so the
# default configs leave it unset and record the volume here; ``in_chans`` defaults to 1 (Atlas3DConfig).
DEFAULT_VOLUME_SIZES: dict[str, tuple[int, int, int, int]] = {
    "atlas3d_base": (1, 256, 256, 256),
    "atlas3d_small": (1, 256, 256, 256),
    "atlas3d_tiny": (1, 64, 64, 64),
    "atlas3d_tiny_window": (1, 64, 64, 64),
    "test3d_atlas": (1, 32, 24, 40),
    "test3d_atlas_aniso": (1, 16, 48, 64),
    "test3d_atlas_window": (1, 32, 24, 40),
}


def _cfg() -> dict:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": None,  # volumes: see DEFAULT_VOLUME_SIZES
        "pool_size": None,
        "crop_pct": 1.0,
        "interpolation": "trilinear",
        "fixed_input_size": False,
        "mean": (0.0,),
        "std": (1.0,),  # volumes are normalised by the data pipeline (e.g. a CT Hounsfield window)
        "first_conv": "stem.conv0.0",
        "classifier": "head",
        "license": "apache-2.0",
    }


default_cfgs = generate_default_cfgs({name: _cfg() for name in DEFAULT_VOLUME_SIZES})


def _create(variant: str, pretrained: bool = False, **kwargs) -> Atlas3D:
    if pretrained:
        raise ValueError(
            f"no pretrained weights are published for {variant!r}; load your own with "
            "`model.load_state_dict(safetensors.torch.load_file(path))`"
        )
    num_stages = len(kwargs.get("depths", VARIANT_CONFIGS_3D[variant].depths))
    return build_model_with_cfg(
        partial(Atlas3D.from_overrides, VARIANT_CONFIGS_3D[variant]),
        variant,
        pretrained,
        feature_cfg={"feature_cls": "getter", "out_indices": tuple(range(num_stages))},
        **kwargs,
    )


@register_model
def atlas3d_base(pretrained: bool = False, **kwargs) -> Atlas3D:
    """Atlas-3D-B/16 (768 dim, 12 heads, D = {2, 10}, 8^3-token windows, stride 2)."""
    return _create("atlas3d_base", pretrained, **kwargs)


@register_model
def atlas3d_small(pretrained: bool = False, **kwargs) -> Atlas3D:
    """Atlas-3D-S/16 (384 dim, 6 heads, D = {2, 10}, 8^3-token windows, stride 2)."""
    return _create("atlas3d_small", pretrained, **kwargs)


@register_model
def atlas3d_tiny(pretrained: bool = False, **kwargs) -> Atlas3D:
    """CPU-sized Atlas-3D (64 dim, 4 heads, D = {2, 2}, patch 8, 4^3-token windows, stride 2)."""
    return _create("atlas3d_tiny", pretrained, **kwargs)


@register_model
def atlas3d_tiny_window(pretrained: bool = False, **kwargs) -> Atlas3D:
    """``atlas3d_tiny`` with window attention only (single scale): the no-communication control."""
    return _create("atlas3d_tiny_window", pretrained, **kwargs)


@register_model
def test3d_atlas(pretrained: bool = False, **kwargs) -> Atlas3D:
    return _create("test3d_atlas", pretrained, **kwargs)


@register_model
def test3d_atlas_aniso(pretrained: bool = False, **kwargs) -> Atlas3D:
    return _create("test3d_atlas_aniso", pretrained, **kwargs)


@register_model
def test3d_atlas_window(pretrained: bool = False, **kwargs) -> Atlas3D:
    return _create("test3d_atlas_window", pretrained, **kwargs)
