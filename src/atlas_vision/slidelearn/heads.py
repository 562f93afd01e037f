"""The slide heads registered with timm: ``slide_meanpool``, ``slide_abmil``, ``slide_atlas``.

``import atlas_vision.slidelearn`` imports this module (``import atlas_vision`` stays light and registers these on
demand for the training CLI), so ``timm.create_model("slide_abmil", in_chans=C + 1, num_classes=2)`` and
``atlas-vision train --model.name slide_atlas --data.task slide_features ...`` work like any other model.
``in_chans`` is the feature width of the grid plus one mask channel (see
:mod:`~atlas_vision.slidelearn.grid_input`); the training pipeline sets it from the data.
"""

from __future__ import annotations

from typing import Any

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from atlas_vision.slidelearn.abmil import ABMILHead
from atlas_vision.slidelearn.feature_atlas import SlideAtlas
from atlas_vision.slidelearn.mean_pool import MeanPoolHead

HEADS: dict[str, type[nn.Module]] = {
    "slide_meanpool": MeanPoolHead,
    "slide_abmil": ABMILHead,
    "slide_atlas": SlideAtlas,
}


def _cfg(first_conv: str) -> dict[str, Any]:
    # feature grids have no pixel preprocessing: identity mean/std, any grid size
    return {
        "url": "",
        "num_classes": 2,
        "input_size": (0, 32, 32),
        "fixed_input_size": False,
        "mean": (),
        "std": (),
        "first_conv": first_conv,
        "classifier": "head",
        "license": "apache-2.0",
    }


default_cfgs = generate_default_cfgs(
    {
        "slide_meanpool": _cfg("head"),
        "slide_abmil": _cfg("embed.0"),
        "slide_atlas": _cfg("stem.proj"),
    }
)


def _create(name: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    if pretrained:
        raise ValueError(f"no pretrained weights are published for {name!r}; train it with `atlas-vision train`")
    kwargs.setdefault("in_chans", 2)
    kwargs.setdefault("num_classes", 2)
    return build_model_with_cfg(HEADS[name], name, pretrained, **kwargs)


@register_model
def slide_meanpool(pretrained: bool = False, **kwargs: Any) -> MeanPoolHead:
    """Masked mean of the tissue cells' features + linear: the floor."""
    return _create("slide_meanpool", pretrained, **kwargs)


@register_model
def slide_abmil(pretrained: bool = False, **kwargs: Any) -> ABMILHead:
    """Gated-attention MIL over the grid's tissue cells (Ilse et al. 2018)."""
    return _create("slide_abmil", pretrained, **kwargs)


@register_model
def slide_atlas(pretrained: bool = False, **kwargs: Any) -> SlideAtlas:
    """A small Atlas (32 dim, 2 heads, D = {1, 1}, 4x4-cell windows, stride 2, max-pool readout) over the grid."""
    return _create("slide_atlas", pretrained, **kwargs)
