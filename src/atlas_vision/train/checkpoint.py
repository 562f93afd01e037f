"""Checkpoint directories: written atomically, found from a run directory, read back for resume, eval and predict.

A checkpoint is a directory (``RUN/checkpoints/last``, ``RUN/checkpoints/best``) holding

* ``model.safetensors`` - the model weights (unwrapped from DDP / ``torch.compile``);
* ``state.pt``          - everything else needed to continue bit-exactly: optimizer, scheduler, grad scaler, EMA
  weights, RNG states, data position (epoch, micro-batches consumed), partial-epoch statistics, best accuracy.
  Only tensors and plain Python containers, so it loads with ``torch.load(weights_only=True)``;
* ``meta.json``         - what inference needs without the config tree: model name and kwargs, classes, mean/std,
  input size, epoch/step, accuracy;
* ``config.yaml``       - the fully resolved training config.

Atomicity: the new checkpoint is written to ``.<name>.tmp``; then the old ``<name>`` is renamed to ``.<name>.old``,
``.<name>.tmp`` to ``<name>`` and ``.<name>.old`` is deleted - every step an ``os.replace``.  At any moment either
``<name>`` or ``.<name>.old`` is complete, and :func:`find_checkpoint` falls back to the latter, so a SIGKILL at any
point leaves a usable checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

CHECKPOINT_DIR = "checkpoints"
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "state.pt"
META_FILE = "meta.json"
CONFIG_FILE = "config.yaml"


def _tmp(directory: Path) -> Path:
    return directory.with_name(f".{directory.name}.tmp")


def _old(directory: Path) -> Path:
    return directory.with_name(f".{directory.name}.old")


def _rmtree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def _publish(tmp: Path, directory: Path) -> None:
    """Swap the fully written ``tmp`` directory into place as ``directory`` (see the module docstring)."""
    old = _old(directory)
    _rmtree(old)
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    _rmtree(old)


def write_checkpoint_dir(directory: Path, write: Callable[[Path], None]) -> None:
    """Atomically (re)create ``directory``: ``write(tmp_dir)`` fills a temporary directory that is then swapped in."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(directory)
    _rmtree(tmp)
    tmp.mkdir()
    write(tmp)
    _publish(tmp, directory)


def save_checkpoint(
    directory: Path, model: nn.Module, state: dict[str, Any], meta: dict[str, Any], config_yaml: str
) -> None:
    """Atomically write a checkpoint directory (weights, training state, meta data, config)."""

    def write(tmp: Path) -> None:
        save_model(model, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        torch.save(state, tmp / STATE_FILE)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / CONFIG_FILE).write_text(config_yaml)

    write_checkpoint_dir(directory, write)


def copy_checkpoint(src: Path, directory: Path) -> None:
    """Atomically make ``directory`` a copy of checkpoint ``src`` (e.g. ``best`` from ``last``)."""
    write_checkpoint_dir(directory, lambda tmp: [shutil.copy2(f, tmp / f.name) for f in src.iterdir()])


def _complete(directory: Path) -> bool:
    return all((directory / name).is_file() for name in (WEIGHTS_FILE, META_FILE, CONFIG_FILE))


def find_checkpoint(path: str | Path, prefer: str = "last") -> Path:
    """The checkpoint directory for ``path``: a checkpoint directory itself, a run directory (then
    ``checkpoints/<prefer>``, falling back to the other of last/best) or a ``checkpoints`` directory.

    Raises:
        FileNotFoundError: naming what was looked for.
    """
    path = Path(path)
    if _complete(path):
        return path
    if _complete(_old(path)):  # killed between the two renames of _publish
        return _old(path)
    order = [prefer] + [n for n in ("last", "best") if n != prefer]
    roots = [path / CHECKPOINT_DIR, path]
    for root in roots:
        for name in order:
            for candidate in (root / name, _old(root / name)):
                if _complete(candidate):
                    return candidate
    raise FileNotFoundError(
        f"no checkpoint found at {str(path)!r}: expected a checkpoint directory (with {WEIGHTS_FILE}, {META_FILE}, "
        f"{CONFIG_FILE}) or a run directory containing {CHECKPOINT_DIR}/last or {CHECKPOINT_DIR}/best"
    )


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory that holds ``checkpoint`` (``RUN/checkpoints/last`` -> ``RUN``)."""
    parent = checkpoint.parent
    return parent.parent if parent.name == CHECKPOINT_DIR else parent


def read_meta(checkpoint: Path) -> dict[str, Any]:
    """``meta.json`` of a checkpoint directory."""
    return json.loads((checkpoint / META_FILE).read_text())


def load_weights(model: nn.Module, checkpoint: Path, strict: bool = True) -> None:
    """Load ``model.safetensors`` into ``model`` (on the CPU first; the parameters keep their device)."""
    missing, unexpected = load_model(model, str(checkpoint / WEIGHTS_FILE), strict=strict)
    del missing, unexpected


def load_state(checkpoint: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``state.pt`` of a checkpoint (optimizer, scheduler, scaler, EMA, RNG and data position)."""
    path = checkpoint / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(checkpoint)!r} has no {STATE_FILE}; it cannot be resumed")
    return torch.load(path, map_location=map_location, weights_only=True)
