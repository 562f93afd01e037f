"""Registered Atlas-3D variants (timm): each is an :class:`Atlas3DConfig` diff
(:mod:`atlas_vision.models.variant_configs3d`) plus a default config.

``import atlas_vision`` makes ``timm.create_model("atlas3d_small", in_chans=1, num_classes=2)`` work, including
``features_only=True`` (timm's feature getter over :meth:`Atlas3D.forward_intermediates`, NCDHW maps): this module
is imported, like :mod:`atlas_vision.models.variants`, from the post-import hook of
:mod:`atlas_vision._timm_registration`, so it imports no model code until a variant is built.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

if TYPE_CHECKING:
    from atlas_vision.models.atlas3d import Atlas3D


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
    from atlas_vision.models.atlas3d import Atlas3D  # deferred: registration must not import the model code
    from atlas_vision.models.variant_configs3d import VARIANT_CONFIGS_3D

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
