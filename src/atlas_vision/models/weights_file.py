"""Reading weight files safely: safetensors, or ``torch.load(weights_only=True)`` -- never an unrestricted unpickle.

A weight file may hold a bare ``state_dict`` or one of the usual containers (``{"model": sd}``, ``{"state_dict":
sd}``, ``{"state_dict_ema": sd}``, ``{"model_ema": sd}``), with or without the ``module.`` prefix that
``DistributedDataParallel`` adds (or ``model.`` from a Lightning module, ``_orig_mod.`` from ``torch.compile``).
:func:`read_state_dict` returns the plain ``{name: tensor}`` mapping in every case.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

# containers, in the order they are looked for (EMA weights are not preferred: the raw model is what was trained)
CONTAINER_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "model_ema")
# prefixes stripped when *every* key carries them
WRAPPER_PREFIXES = ("module.", "model.", "_orig_mod.")
SAFETENSORS_SUFFIX = ".safetensors"


class CheckpointFormatError(ValueError):
    """The file is not a readable weight file (truncated, another format, no tensors)."""


class UnsafeCheckpointError(CheckpointFormatError):
    """The file is a pickle that needs arbitrary Python objects (which could run code) to load: refused."""


def _is_safetensors(path: Path) -> bool:
    if path.suffix == SAFETENSORS_SUFFIX:
        return True
    # a safetensors file starts with an 8-byte little-endian header size, then a JSON header "{..."
    with path.open("rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{" and not zipfile.is_zipfile(path)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointFormatError(
            f"{str(path)!r} is not a readable safetensors file (truncated or corrupt?): {error}"
        ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _load_torch(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        text = str(error)
        lowered = text.lower()
        if "weights only load failed" in lowered and ("global" in lowered or "unsupported operand" in lowered):
            detail = next((line for line in text.splitlines() if "global" in line.lower()), _first_line(error))
            raise UnsafeCheckpointError(
                f"refused to load {str(path)!r}: it is a pickle that needs Python objects other than tensors and "
                f"plain containers (such a pickle can run arbitrary code). atlas-vision reads weights only with "
                f"torch.load(weights_only=True) or from safetensors, never with an unrestricted unpickle; if you "
                f"trust the file, re-save its state_dict yourself. (torch: {detail.strip()})"
            ) from None
        raise CheckpointFormatError(f"{str(path)!r} is not a PyTorch checkpoint: {_first_line(error)}") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
        raise CheckpointFormatError(
            f"{str(path)!r} is not a readable PyTorch checkpoint (truncated or another format?): {_first_line(error)}"
        ) from None


def unwrap_state_dict(obj: object, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The ``{name: tensor}`` mapping inside a loaded checkpoint object (see the module docstring).

    Raises:
        CheckpointFormatError: if no mapping of tensors is found.
    """
    if isinstance(obj, Mapping):
        for key in CONTAINER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointFormatError(
            f"{source} holds no state_dict: expected a mapping of tensors (or one under {list(CONTAINER_KEYS)}), "
            f"got {type(obj).__name__}"
        )
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors or not all(isinstance(k, str) for k in tensors):
        raise CheckpointFormatError(f"{source} holds no tensors with string names; keys: {list(obj)[:5]}")
    for prefix in WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix) :]: v for k, v in tensors.items()}
    return tensors


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the state_dict of a weight file (``.safetensors``, or a ``torch.save`` file read with
    ``weights_only=True``), unwrapping the usual containers.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: a pickle that would need arbitrary objects (could execute code): refused.
        CheckpointFormatError: truncated, corrupt or not a checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weight file at {str(path)!r}")
    obj = _load_safetensors(path) if _is_safetensors(path) else _load_torch(path)
    return unwrap_state_dict(obj, source=repr(str(path)))
