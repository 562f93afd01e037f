"""Checkpoint directories: written atomically and durably, found from a run directory, checked, read back for resume,
eval and predict.

A checkpoint is a directory (``RUN/checkpoints/last``, ``RUN/checkpoints/best``) holding

* ``model.safetensors`` - the model weights (unwrapped from DDP / ``torch.compile``);
* ``state.pt``          - everything else needed to continue bit-exactly: optimizer, scheduler, grad scaler, EMA
  weights, RNG states, data position (epoch, micro-batches consumed), partial-epoch statistics, best accuracy.
  Only tensors and plain Python containers, so it loads with ``torch.load(weights_only=True)``;
* ``config.yaml``       - the fully resolved training config;
* ``meta.json``         - what inference needs without the config tree: model name and kwargs, classes, mean/std,
  input size, epoch/step, accuracy.  Written last: a parseable ``meta.json`` means every other file was complete.

Atomicity and durability: the new checkpoint is written to ``.<name>.tmp`` (each file ``fsync``-ed, then the
directory); then a complete ``<name>`` is renamed to ``.<name>.old``, ``.<name>.tmp`` to ``<name>`` (parent
directory ``fsync``-ed) and ``.<name>.old`` is deleted - every step an ``os.replace``.  ``.<name>.old`` is only
deleted while a complete ``<name>`` exists, so after a resume from ``.<name>.old`` (``<name>`` missing) the next save
keeps ``.old`` until the new ``<name>`` is in place.  :func:`find_checkpoint` looks at ``<name>``, then
``.<name>.old``, then a complete ``.<name>.tmp`` (killed between the end of the write and the rename), and takes the
first *complete* one (:func:`checkpoint_problem`: every file present, ``meta.json`` valid, the safetensors header
readable and the file as long as the header says, ``state.pt`` a whole zip archive) - so a SIGKILL at any point, or
two in a row, leaves a usable checkpoint.

Error contract (what callers, e.g. the trainer, can rely on):

* writing (:func:`save_checkpoint`, :func:`copy_checkpoint`, :func:`write_checkpoint_dir`): any failure of the file
  system (full disk, read-only, permissions) raises :class:`CheckpointWriteError`, an ``OSError`` subclass whose
  message is one line naming the directory and the cause; the ``.tmp`` directory is removed and the previous
  checkpoint is left as it was;
* reading (:func:`find_checkpoint`, :func:`read_meta`, :func:`load_weights`, :func:`load_state`): a damaged,
  incomplete or foreign checkpoint raises :class:`CheckpointError`, a ``ValueError`` subclass whose one-line message
  names the file and says what to do (``FileNotFoundError`` when nothing is there at all).  A ``state.pt`` that
  would run code when unpickled is refused with a message saying so.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import struct
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger("atlas_vision.train")

CHECKPOINT_DIR = "checkpoints"
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "state.pt"
META_FILE = "meta.json"
CONFIG_FILE = "config.yaml"
REQUIRED_FILES: tuple[str, ...] = (WEIGHTS_FILE, META_FILE, CONFIG_FILE)
# meta.json keys inference needs (predict / eval rebuild the model from them)
META_KEYS: tuple[str, ...] = (
    "model",
    "num_classes",
    "in_chans",
    "class_names",
    "img_size",
    "mean",
    "std",
    "interpolation",
)
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024  # the safetensors format's own limit


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: damaged, incomplete, refused, or of another model (one-line message)."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (full disk, read-only file system, ...); the previous checkpoint is intact."""


# ---------------------------------------------------------------------------------------------------- durable writes


def _tmp(directory: Path) -> Path:
    return directory.with_name(f".{directory.name}.tmp")


def _old(directory: Path) -> Path:
    return directory.with_name(f".{directory.name}.old")


def _rmtree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def fsync_path(path: Path) -> None:
    """``fsync`` a file or a directory (directories: where the OS allows opening them, i.e. not on Windows)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except (IsADirectoryError, PermissionError):  # Windows cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(directory: Path) -> None:
    for entry in directory.iterdir():
        fsync_path(entry)
    fsync_path(directory)


def _publish(tmp: Path, directory: Path) -> None:
    """Swap the complete, fsync-ed ``tmp`` into place as ``directory`` (see the module docstring)."""
    old = _old(directory)
    if directory.exists():
        if checkpoint_problem(directory) is None:
            _rmtree(old)  # `directory` is a complete copy: the older one can go
        elif old.exists():
            _rmtree(directory)  # `directory` is damaged and `old` may be the only good copy: keep `old`
        if directory.exists():
            os.replace(directory, old)
    os.replace(tmp, directory)
    fsync_path(directory.parent)
    _rmtree(old)


def write_checkpoint_dir(directory: Path, write: Callable[[Path], None]) -> None:
    """Atomically (re)create ``directory``: ``write(tmp_dir)`` fills a temporary directory that is then swapped in.

    Raises:
        CheckpointWriteError: the file system refused (the temporary directory is removed, the old one kept).
    """
    tmp = _tmp(Path(directory))
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        _rmtree(tmp)
        tmp.mkdir()
        write(tmp)
        _fsync_tree(tmp)
        _publish(tmp, directory)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError) or type(err).__name__ == "SafetensorError":
            reason = f"{err.strerror} (errno {err.errno})" if isinstance(err, OSError) and err.strerror else str(err)
            raise CheckpointWriteError(
                getattr(err, "errno", None) or 0,
                f"could not write checkpoint {str(directory)!r}: {reason}; the previous checkpoint (if any) is "
                "unchanged - free disk space or choose another run.out, then resume",
            ) from err
        raise


def save_checkpoint(
    directory: Path, model: nn.Module, state: dict[str, Any], meta: dict[str, Any], config_yaml: str
) -> None:
    """Atomically write a checkpoint directory (weights, training state, config, meta data last).

    Raises:
        CheckpointWriteError: see :func:`write_checkpoint_dir`.
    """
    from safetensors.torch import save_model

    def write(tmp: Path) -> None:
        save_model(model, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        torch.save(state, tmp / STATE_FILE)
        (tmp / CONFIG_FILE).write_text(config_yaml)
        _fsync_tree(tmp)  # everything above is on disk before meta.json says the checkpoint is complete
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    write_checkpoint_dir(directory, write)


def copy_checkpoint(src: Path, directory: Path) -> None:
    """Atomically make ``directory`` a copy of checkpoint ``src`` (e.g. ``best`` from ``last``); ``meta.json`` last.

    Raises:
        CheckpointWriteError: see :func:`write_checkpoint_dir`.
    """

    def write(tmp: Path) -> None:
        files = sorted(src.iterdir(), key=lambda f: f.name == META_FILE)  # meta.json last
        for f in files:
            shutil.copy2(f, tmp / f.name)

    write_checkpoint_dir(directory, write)


# ------------------------------------------------------------------------------------------------- completeness


def _safetensors_problem(path: Path) -> str | None:
    """``None`` if ``path`` has a readable safetensors header and is as long as that header says."""
    size = path.stat().st_size
    if size < 8:
        return f"{path.name} is empty or truncated ({size} bytes)"
    with path.open("rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > min(size - 8, _MAX_SAFETENSORS_HEADER):
            return f"{path.name} has no readable safetensors header (truncated or not a safetensors file)"
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return f"{path.name} has a damaged safetensors header"
    if not isinstance(header, dict):
        return f"{path.name} has a damaged safetensors header"
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (TypeError, KeyError, ValueError, IndexError):
        return f"{path.name} has a damaged safetensors header"
    if 8 + header_len + end != size:
        return f"{path.name} is truncated ({size} bytes, its header describes {8 + header_len + end})"
    return None


def _meta_problem(path: Path) -> str | None:
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return f"{path.name} is not valid JSON ({err})"
    if not isinstance(meta, dict):
        return f"{path.name} is not a JSON object"
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        return f"{path.name} lacks the key(s) {missing}"
    model = meta["model"]
    if (
        not isinstance(model, dict)
        or not isinstance(model.get("name"), str)
        or not isinstance(model.get("kwargs"), dict)
    ):
        return f"{path.name}: 'model' must be an object with 'name' (string) and 'kwargs' (object)"
    return None


def checkpoint_problem(directory: Path) -> str | None:
    """``None`` if ``directory`` is a complete checkpoint, else what is wrong (one phrase naming the file)."""
    if not directory.is_dir():
        return f"{directory} is not a directory"
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        return f"missing {', '.join(missing)}"
    problem = _meta_problem(directory / META_FILE) or _safetensors_problem(directory / WEIGHTS_FILE)
    if problem is None and (directory / STATE_FILE).is_file() and not zipfile.is_zipfile(directory / STATE_FILE):
        problem = f"{STATE_FILE} is truncated or not a torch.save archive"
    return problem


def _complete(directory: Path) -> bool:
    return checkpoint_problem(directory) is None


def find_checkpoint(path: str | Path, prefer: str = "last") -> Path:
    """The complete checkpoint directory for ``path``: a checkpoint directory itself (or its ``.old`` / ``.tmp``
    sibling), a run directory (then ``checkpoints/<prefer>``, falling back to the other of last/best) or a
    ``checkpoints`` directory.

    Raises:
        CheckpointError: ``path`` is a checkpoint directory, but it and its siblings are damaged (naming the file).
        FileNotFoundError: nothing that looks like a checkpoint is there (naming what was looked for).
    """
    path = Path(path)
    if not path.name:  # "." or "/": name the directory itself
        path = path.resolve()
    own = [path, _old(path), _tmp(path)]
    for candidate in own:
        if _complete(candidate):
            return candidate
    order = [prefer] + [n for n in ("last", "best") if n != prefer]
    damaged: list[str] = []
    for root in (path / CHECKPOINT_DIR, path):
        for name in order:
            for candidate in (root / name, _old(root / name), _tmp(root / name)):
                if _complete(candidate):
                    if damaged:
                        log.warning("skipping damaged checkpoint %s; using %s", damaged[0], candidate)
                    return candidate
                if candidate.is_dir() and candidate.name == name:
                    damaged.append(f"{candidate}: {checkpoint_problem(candidate)}")
    if (path / WEIGHTS_FILE).exists() or (path / META_FILE).exists():  # the user named a damaged checkpoint dir
        damaged.insert(0, f"{path}: {checkpoint_problem(path)}")
    if damaged:
        raise CheckpointError(
            f"checkpoint {damaged[0]}; no complete copy found next to it - use the other checkpoint "
            "(--which best|last) or an earlier run"
        )
    raise FileNotFoundError(
        f"no checkpoint found at {str(path)!r}: expected a checkpoint directory (with {WEIGHTS_FILE}, {META_FILE}, "
        f"{CONFIG_FILE}) or a run directory containing {CHECKPOINT_DIR}/last or {CHECKPOINT_DIR}/best"
    )


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory that holds ``checkpoint`` (``RUN/checkpoints/last`` -> ``RUN``)."""
    parent = checkpoint.parent
    return parent.parent if parent.name == CHECKPOINT_DIR else parent


# ------------------------------------------------------------------------------------------------------- reading


def read_meta(checkpoint: Path) -> dict[str, Any]:
    """``meta.json`` of a checkpoint directory.

    Raises:
        CheckpointError: missing, not valid JSON, or lacking a key inference needs (naming the file).
    """
    path = Path(checkpoint) / META_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(checkpoint)!r} has no {META_FILE}; it is incomplete")
    problem = _meta_problem(path)
    if problem is not None:
        raise CheckpointError(f"checkpoint file {str(path)!r}: {problem}; the checkpoint is damaged - use another one")
    return json.loads(path.read_text())


def _fit_hint(model: nn.Module, key: str, saved: tuple[int, ...], current: tuple[int, ...]) -> str:
    """The option that makes ``model`` fit a checkpoint whose ``key`` has shape ``saved``."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    classifier, first_conv = cfg.get("classifier", "head"), cfg.get("first_conv", "")
    if key.startswith(f"{classifier}.") and saved:
        return (
            f"the checkpoint was trained for {saved[0]} classes, this model has {current[0] if current else 0}: "
            f"evaluate it on data with {saved[0]} classes, or build the model with num_classes={saved[0]}"
        )
    if first_conv and key.startswith(f"{first_conv}.") and len(saved) == 4:
        return f"the checkpoint expects {saved[1]} input channels: set data.in_chans {saved[1]}"
    return "the checkpoint is of another architecture: use its own config.yaml (same model.name and model.kwargs)"


def check_state_dict_fits(model: nn.Module, shapes: Mapping[str, tuple[int, ...]], source: str) -> None:
    """Compare the tensor ``shapes`` of a saved state dict with ``model`` before loading anything.

    Raises:
        CheckpointError: naming the first missing, unexpected or mismatching key, both shapes, and the option that
            fits (``num_classes``, ``data.in_chans`` or the checkpoint's own config).
    """
    current = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key, shape in current.items():
        if key in shapes and tuple(shapes[key]) != shape:
            saved = tuple(shapes[key])
            raise CheckpointError(
                f"{source}: weight {key!r} has shape {saved} in the checkpoint but {shape} in the model; "
                f"{_fit_hint(model, key, saved, shape)}"
            )
    missing = [k for k in current if k not in shapes]
    unexpected = [k for k in shapes if k not in current]
    if missing or unexpected:
        first = f"the model's {missing[0]!r} is not in the checkpoint" if missing else ""
        first = first or f"the checkpoint's {unexpected[0]!r} is not in the model"
        raise CheckpointError(
            f"{source}: {first} ({len(missing)} missing, {len(unexpected)} unexpected key(s)); the checkpoint is of "
            "another architecture: use its own config.yaml (same model.name and model.kwargs)"
        )


def load_weights(model: nn.Module, checkpoint: Path, strict: bool = True) -> None:
    """Load ``model.safetensors`` into ``model`` (on the CPU first; the parameters keep their device).

    Raises:
        CheckpointError: the file is missing, empty, truncated or damaged, or holds weights of another shape
            (see :func:`check_state_dict_fits`; checked before anything is loaded).
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_model

    path = Path(checkpoint) / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(checkpoint)!r} has no {WEIGHTS_FILE}; it is incomplete")
    problem = _safetensors_problem(path)
    if problem is None:
        try:
            with safe_open(str(path), framework="pt") as f:
                names = f.keys()
                shapes = {k: tuple(f.get_slice(k).get_shape()) for k in names}
        except (SafetensorError, OSError) as err:
            problem = f"{WEIGHTS_FILE} cannot be read ({err})"
    if problem is not None:
        raise CheckpointError(
            f"checkpoint file {str(path)!r}: {problem}; re-create it, or use the other checkpoint (--which best|last)"
        )
    if strict:
        check_state_dict_fits(model, shapes, f"checkpoint file {str(path)!r}")
    load_model(model, str(path), strict=strict)


def load_state_dict_checked(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``model.load_state_dict(state_dict)`` after :func:`check_state_dict_fits` (e.g. EMA weights of ``state.pt``)."""
    check_state_dict_fits(model, {k: tuple(v.shape) for k, v in state_dict.items()}, source)
    model.load_state_dict(state_dict)


def load_state(checkpoint: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``state.pt`` of a checkpoint (optimizer, scheduler, scaler, EMA, RNG and data position).

    Raises:
        FileNotFoundError: no ``state.pt`` (the checkpoint cannot be resumed).
        CheckpointError: truncated/damaged, or refused because unpickling it would run code.
    """
    path = Path(checkpoint) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(checkpoint)!r} has no {STATE_FILE}; it cannot be resumed")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"checkpoint file {str(path)!r} is truncated or not a torch.save archive; use another checkpoint"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"checkpoint file {str(path)!r} is refused: it holds Python objects that would run code when loaded "
            "(atlas-vision loads only tensors and plain containers); it was not written by atlas-vision or was "
            "tampered with - use a checkpoint you wrote"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"checkpoint file {str(path)!r} cannot be read ({err}); use another checkpoint") from err
