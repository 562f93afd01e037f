"""Atlas models.  The timm registration happens when timm is imported (see :mod:`atlas_vision._timm_registration`);
the names below are imported on first use, so ``atlas_vision.models.list_models`` answers without torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from atlas_vision.models.names import VARIANT_NAMES

if TYPE_CHECKING:
    from atlas_vision.models.atlas import Atlas, AtlasStage
    from atlas_vision.models.config import AtlasConfig
    from atlas_vision.models.variant_configs import VARIANT_CONFIGS

__all__ = ["VARIANT_CONFIGS", "VARIANT_NAMES", "Atlas", "AtlasConfig", "AtlasStage", "create_model", "list_models"]

_LAZY: dict[str, str] = {
    "Atlas": "atlas_vision.models.atlas",
    "AtlasStage": "atlas_vision.models.atlas",
    "AtlasConfig": "atlas_vision.models.config",
    "VARIANT_CONFIGS": "atlas_vision.models.variant_configs",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'atlas_vision.models' has no attribute {name!r}")


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered Atlas variants matching a glob ``pattern``."""
    from fnmatch import fnmatch

    return sorted(name for name in VARIANT_NAMES if fnmatch(name, pattern))


def create_model(name: str, **kwargs) -> Atlas:
    """``timm.create_model`` restricted to Atlas variants, with a clear error for an unknown name."""
    import timm

    if name not in VARIANT_NAMES:
        raise ValueError(f"unknown Atlas model {name!r}; registered: {list_models()}")
    return timm.create_model(name, **kwargs)
