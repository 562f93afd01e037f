"""Atlas models (2-D images and 3-D volumes); importing this registers them with timm."""

from atlas_vision.models.atlas import Atlas, AtlasStage
from atlas_vision.models.atlas3d import Atlas3D, Atlas3DConfig
from atlas_vision.models.config import AtlasConfig
from atlas_vision.models.variants import VARIANT_CONFIGS
from atlas_vision.models.variants3d import VARIANT_CONFIGS_3D

__all__ = [
    "VARIANT_CONFIGS",
    "VARIANT_CONFIGS_3D",
    "Atlas",
    "Atlas3D",
    "Atlas3DConfig",
    "AtlasConfig",
    "AtlasStage",
    "create_model",
    "list_models",
    "model_class",
]


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered Atlas variants (2-D and 3-D) matching a glob ``pattern``."""
    from fnmatch import fnmatch

    return sorted(name for name in (*VARIANT_CONFIGS, *VARIANT_CONFIGS_3D) if fnmatch(name, pattern))


def model_class(config: AtlasConfig) -> type[Atlas]:
    """:class:`Atlas3D` for a 3-D config, :class:`Atlas` otherwise."""
    return Atlas3D if config.ndim == 3 else Atlas


def create_model(name: str, **kwargs) -> Atlas:
    """``timm.create_model`` restricted to Atlas variants, with a clear error for an unknown name."""
    import timm

    if name not in VARIANT_CONFIGS and name not in VARIANT_CONFIGS_3D:
        raise ValueError(f"unknown Atlas model {name!r}; registered: {list_models()}")
    return timm.create_model(name, **kwargs)
