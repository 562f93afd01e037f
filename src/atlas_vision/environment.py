"""What produced a number: library versions, git commit, device, threads, date (benchmark rows, run summaries)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch


def git_commit(cwd: str | os.PathLike[str] | None = None) -> str:
    """``git rev-parse --short HEAD`` of the source tree, with ``+dirty`` if it has local changes (read-only git calls:
    ``--no-optional-locks`` keeps ``status`` from refreshing the index);
    ``"unknown"`` outside a git checkout."""
    where = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+dirty" if dirty else head


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, where ``platform.processor()`` is often empty); the machine
    type (``x86_64``) when neither knows it. The development VM is not always the same CPU, so rows must say which."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_bf16_matrix_units(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> bool:
    """Whether the CPU advertises Intel AMX bf16 tiles (``amx_bf16`` in ``/proc/cpuinfo``'s flags): on such a CPU
    oneDNN runs bf16 matrix products ~3x faster than fp32 (and bf16 autocast is worth trying), while on CPUs without
    them bf16 can be hundreds of times slower than fp32. ``False`` where the flags cannot be read."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags") and ":" in line:
                    return "amx_bf16" in line.split(":", 1)[1].split()
    except OSError:
        pass
    return False


def device_name(device: torch.device) -> str:
    """GPU model name on CUDA, the CPU model otherwise."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def env_metadata(device: torch.device, dtype: str, seed: int | str) -> dict[str, Any]:
    """The :data:`ENV_COLUMNS` values of this process."""
    import timm

    from atlas_vision.version import __version__

    return {
        "device": device.type if device.index is None else f"{device.type}:{device.index}",
        "device_name": device_name(device),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "atlas_vision": __version__,
        "git_commit": git_commit(),
        "dtype": dtype,
        "seed": seed,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "threads": torch.get_num_threads(),
    }
