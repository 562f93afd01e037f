"""Atlas models; importing this registers them with timm."""

from atlas_vision.models.atlas import Atlas, AtlasStage
from atlas_vision.models.config import AtlasConfig
from atlas_vision.models.variants import VARIANT_CONFIGS

__all__ = ["Atlas", "AtlasConfig", "AtlasStage", "VARIANT_CONFIGS", "create_model", "list_models"]


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered Atlas variants matching a glob ``pattern``."""
    from fnmatch import fnmatch

    return sorted(name for name in VARIANT_CONFIGS if fnmatch(name, pattern))


def create_model(name: str, **kwargs) -> Atlas:
    """``timm.create_model`` restricted to Atlas variants, with a clear error for an unknown name."""
    import timm

    if name not in VARIANT_CONFIGS:
        raise ValueError(f"unknown Atlas model {name!r}; registered: {list_models()}")
    return timm.create_model(name, **kwargs)
