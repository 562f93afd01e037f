"""Atlas models (2-D images and 3-D volumes).  The timm registration of both happens when timm is imported (see
:mod:`atlas_vision._timm_registration`); the names below are imported on first use, so
``atlas_vision.models.list_models`` answers without torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from atlas_vision.models.names import VARIANT_NAMES, VARIANT_NAMES_3D

if TYPE_CHECKING:
    from atlas_vision.models.atlas import Atlas, AtlasStage
    from atlas_vision.models.atlas3d import Atlas3D, Atlas3DConfig
    from atlas_vision.models.config import AtlasConfig
    from atlas_vision.models.variant_configs import VARIANT_CONFIGS
    from atlas_vision.models.variant_configs3d import VARIANT_CONFIGS_3D

__all__ = [
    "VARIANT_CONFIGS",
    "VARIANT_CONFIGS_3D",
    "VARIANT_NAMES",
    "VARIANT_NAMES_3D",
    "Atlas",
    "Atlas3D",
    "Atlas3DConfig",
    "AtlasConfig",
    "AtlasStage",
    "create_model",
    "list_models",
    "model_class",
]

_LAZY: dict[str, str] = {
    "Atlas": "atlas_vision.models.atlas",
    "AtlasStage": "atlas_vision.models.atlas",
    "Atlas3D": "atlas_vision.models.atlas3d",
    "Atlas3DConfig": "atlas_vision.models.atlas3d",
    "AtlasConfig": "atlas_vision.models.config",
    "VARIANT_CONFIGS": "atlas_vision.models.variant_configs",
    "VARIANT_CONFIGS_3D": "atlas_vision.models.variant_configs3d",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'atlas_vision.models' has no attribute {name!r}")


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered Atlas variants (2-D and 3-D) matching a glob ``pattern``."""
    from fnmatch import fnmatch

    return sorted(name for name in (*VARIANT_NAMES, *VARIANT_NAMES_3D) if fnmatch(name, pattern))


def model_class(config: AtlasConfig) -> type[Atlas]:
    """:class:`Atlas3D` for a 3-D config, :class:`Atlas` otherwise."""
    from atlas_vision.models.atlas import Atlas
    from atlas_vision.models.atlas3d import Atlas3D

    return Atlas3D if config.ndim == 3 else Atlas


def create_model(name: str, **kwargs) -> Atlas:
    """``timm.create_model`` restricted to Atlas variants, with a clear error for an unknown name."""
    import timm

    if name not in VARIANT_NAMES and name not in VARIANT_NAMES_3D:
        raise ValueError(f"unknown Atlas model {name!r}; registered: {list_models()}")
    return timm.create_model(name, **kwargs)
