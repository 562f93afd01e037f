"""Hub-style model folders: ``config.json`` + ``model.safetensors`` in the layout timm's ``hf-hub:`` loader reads.

``save_pretrained(model, DIR)`` writes the folder with timm's own ``save_config_for_hf`` (the architecture name, the
full set of constructor arguments under ``model_args`` and the preprocessing under ``pretrained_cfg``) and the weights
with safetensors. Such a folder, pushed to the Hugging Face Hub as ``ORG/NAME``, loads with
``timm.create_model("hf-hub:ORG/NAME", pretrained=True)``; locally, :func:`load_pretrained` goes through the same
parser with ``timm.create_model("local-dir:DIR", pretrained=True)`` (timm >= 1.0.20). Weights pass through
:func:`atlas_vision.models.convert_reference.checkpoint_filter_fn`, so a folder may also hold a reference-format
``model.safetensors``.

Example:
    >>> import atlas_vision, timm
    >>> from atlas_vision.hub import save_pretrained, load_pretrained
    >>> model = timm.create_model("test_atlas", num_classes=3)
    >>> save_pretrained(model, "/tmp/my_atlas")  # doctest: +SKIP
    >>> model = load_pretrained("/tmp/my_atlas")  # doctest: +SKIP
"""

from __future__ import annotations

import json
from dataclasses import fields
from enum import Enum
from pathlib import Path
from typing import Any

import timm
from safetensors.torch import save_file
from timm.models import get_pretrained_cfg
from timm.models._hub import save_config_for_hf
from torch import nn

import atlas_vision.models  # noqa: F401  (registers the Atlas variants with timm)
from atlas_vision.models.atlas import Atlas

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# not architecture: a fine-tuning user chooses their own stochastic depth
_NOT_SAVED = ("drop_path_rate",)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def atlas_model_args(model: Atlas) -> dict[str, Any]:
    """Every :class:`AtlasConfig` field of ``model`` as JSON values: rebuilds the architecture from any variant."""
    config = model.config
    args = {f.name: _jsonable(getattr(config, f.name)) for f in fields(config) if f.name not in _NOT_SAVED}
    args["num_classes"] = model.num_classes  # reset_classifier may have changed it
    return args


def _ensure_pretrained_cfg(model: nn.Module, architecture: str) -> None:
    """Models built without timm (``Atlas(config)``) get the registered cfg of ``architecture``, as timm sets it."""
    if getattr(model, "pretrained_cfg", None) and "architecture" in model.pretrained_cfg:
        return
    cfg = get_pretrained_cfg(architecture).to_dict()
    model.pretrained_cfg = dict(cfg, architecture=architecture)


def save_pretrained(
    model: nn.Module,
    directory: str | Path,
    *,
    model_args: dict[str, Any] | None = None,
    data_config: dict[str, Any] | None = None,
    label_names: list[str] | None = None,
) -> Path:
    """Write ``directory/config.json`` and ``directory/model.safetensors`` (timm hf-hub layout).

    Args:
        model: an Atlas model (its full config is saved) or any timm model (then pass ``model_args``).
        directory: created if needed; existing files of the same names are replaced.
        model_args: constructor arguments that rebuild ``model`` (default for Atlas: every config field).
        data_config: preprocessing to record, e.g. ``{"input_size": (3, 512, 512), "mean": ..., "std": ...}``.
        label_names: class names, index = logit.

    Returns:
        the directory.
    """
    directory = Path(directory)
    if model_args is None:
        if not isinstance(model, Atlas):
            raise TypeError(f"model_args is required for a {type(model).__name__} (only Atlas models infer them)")
        model_args = atlas_model_args(model)
    architecture = getattr(model, "pretrained_cfg", {}).get("architecture", "atlas_base")
    _ensure_pretrained_cfg(model, architecture)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    model_config = {"label_names": list(label_names)} if label_names else None
    save_config_for_hf(
        model, str(directory / CONFIG_FILE), model_config=model_config, model_args=model_args, data_config=data_config
    )
    return directory


def read_hub_config(directory: str | Path) -> dict[str, Any]:
    """``config.json`` of a hub folder (a clear error if it is not one)."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{str(directory)!r} is not a hub folder: it has no {CONFIG_FILE}")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(path)!r} is not valid JSON: {error}") from None
    if not isinstance(config, dict) or "architecture" not in config:
        raise ValueError(f"{str(path)!r} is not a timm model config (no 'architecture')")
    return config


def load_pretrained(directory: str | Path, **overrides: Any) -> nn.Module:
    """Build and load the model of a hub folder through timm's ``local-dir:`` source (the parser ``hf-hub:`` uses).

    Args:
        directory: a folder written by :func:`save_pretrained` (or downloaded from a hub).
        overrides: ``timm.create_model`` keyword arguments (e.g. ``num_classes=10`` for a new head).
    """
    read_hub_config(directory)  # clear error before timm's
    if not (Path(directory) / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"hub folder {str(directory)!r} has no {WEIGHTS_FILE}")
    return timm.create_model(f"local-dir:{Path(directory).resolve()}", pretrained=True, **overrides)
