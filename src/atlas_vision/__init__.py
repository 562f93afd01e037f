"""atlas-vision: Multi-Scale Attention and the Atlas backbone for very high-resolution images.

``import atlas_vision`` registers the Atlas models with timm (``timm.create_model("atlas_base")``) and is cheap: the
public names below are imported on first use, and the registration happens when timm is imported (at once if it
already is; see :mod:`atlas_vision._timm_registration`).  It does not import the baseline mixer zoo
(``atlas_vision.mixers``, which registers ``mixer_net`` with timm when imported) nor the trainer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from atlas_vision._timm_registration import register_when_timm_is_imported
from atlas_vision.version import __version__

if TYPE_CHECKING:
    from atlas_vision.layers import Communication, MSABlock
    from atlas_vision.models import Atlas, AtlasConfig, create_model, list_models
    from atlas_vision.ops import Backend, MultiScaleLayout, PoolOp, bottomup_attention, summarize, topdown_attention

# public name -> module it is imported from on first access
_LAZY: dict[str, str] = {
    "Communication": "atlas_vision.layers",
    "MSABlock": "atlas_vision.layers",
    "Atlas": "atlas_vision.models",
    "AtlasConfig": "atlas_vision.models",
    "create_model": "atlas_vision.models",
    "list_models": "atlas_vision.models",
    "Backend": "atlas_vision.ops",
    "MultiScaleLayout": "atlas_vision.ops",
    "PoolOp": "atlas_vision.ops",
    "bottomup_attention": "atlas_vision.ops",
    "summarize": "atlas_vision.ops",
    "topdown_attention": "atlas_vision.ops",
}

__all__ = [
    "Atlas",
    "AtlasConfig",
    "Backend",
    "Communication",
    "MSABlock",
    "MultiScaleLayout",
    "PoolOp",
    "__version__",
    "bottomup_attention",
    "create_model",
    "list_models",
    "summarize",
    "topdown_attention",
]

register_when_timm_is_imported()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later accesses skip __getattr__
        return value
    raise AttributeError(f"module 'atlas_vision' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
