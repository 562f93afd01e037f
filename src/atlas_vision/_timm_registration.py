"""Register the Atlas models with timm without making ``import atlas_vision`` import timm.

``import atlas_vision`` calls :func:`register_when_timm_is_imported`: if timm is already imported, the Atlas variants
are registered at once; otherwise a post-import hook (a ``sys.meta_path`` finder that only answers for the top-level
name ``timm``) registers them right after timm's own ``__init__`` has run.  Either way
``import atlas_vision; import timm; timm.create_model("atlas_base")`` works, while ``import atlas_vision`` alone (the
``atlas-vision --help`` path) imports neither torch nor timm.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

# importing them runs timm's @register_model decorators for the 2-D and the 3-D Atlas variants; neither imports the
# model code (it may be half-imported when the hook fires: atlas_vision.models.atlas imports timm)
_REGISTRATION_MODULES: tuple[str, ...] = ("atlas_vision.models.variants", "atlas_vision.models.variants3d")
# models registered only when their (heavier) package is imported: name -> module that registers it
ON_DEMAND: dict[str, str] = {
    "mixer_net": "atlas_vision.mixers",
    "slide_meanpool": "atlas_vision.slidelearn",
    "slide_abmil": "atlas_vision.slidelearn",
    "slide_atlas": "atlas_vision.slidelearn",
}


def _register() -> None:
    for module in _REGISTRATION_MODULES:
        importlib.import_module(module)


class _RegisterAfterExec(importlib.abc.Loader):
    """Wraps timm's own loader: run it, then register the Atlas variants."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        _register()


class _TimmImportHook(importlib.abc.MetaPathFinder):
    """Answers only for ``timm``: finds its spec with the other finders and wraps the loader (then removes itself)."""

    def find_spec(self, fullname: str, path: object = None, target: ModuleType | None = None):
        if fullname != "timm":
            return None
        _uninstall()
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(fullname, path, target) if find_spec is not None else None
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RegisterAfterExec(spec.loader)
                return spec
        return None


_HOOK = _TimmImportHook()


def _uninstall() -> None:
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)


def register_when_timm_is_imported() -> None:
    """Register the Atlas variants with timm now (timm already imported) or as soon as timm is imported."""
    if "timm" in sys.modules:
        _register()
    elif _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)


def ensure_registered(name: str) -> None:
    """Make ``timm.create_model(name)`` work for every model this package registers: the Atlas variants and the
    on-demand ones (``mixer_net`` from :mod:`atlas_vision.mixers`, the ``slide_*`` heads from :mod:`atlas_vision.slidelearn`).  Names of other libraries are left alone."""
    import timm  # noqa: F401  (fires the hook: the Atlas variants)

    if name in ON_DEMAND:
        importlib.import_module(ON_DEMAND[name])
