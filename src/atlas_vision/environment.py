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


#: CPU flags whose bf16 instructions made a bf16-autocast training step faster than fp32, with what was measured
#: (``docs/benchmarks.md`` section 8: Atlas-B, 1024 px, batch 1, 2 threads). Without either flag oneDNN emulates
#: bf16 and it can be hundreds of times slower than fp32.
FAST_BF16_FLAGS: dict[str, str] = {
    "amx_bf16": "AMX bf16 tiles, where `run.precision bf16` ran an atlas_base training step at 1024 px 3.7x faster "
    "than fp32 (Intel Xeon, 2026-12-03)",
    "avx512_bf16": "AVX512-BF16 instructions, where `run.precision bf16` ran an atlas_base training step at 1024 px "
    "1.96x faster than fp32 (AMD EPYC Zen 4, 2026-12-04)",
}


def cpu_fast_bf16(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> str | None:
    """What makes bf16 autocast worth trying on this CPU (a :data:`FAST_BF16_FLAGS` description, AMX first), or
    ``None`` where ``/proc/cpuinfo``'s flags name neither unit or cannot be read."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags") and ":" in line:
                    flags = set(line.split(":", 1)[1].split())
                    return next((why for flag, why in FAST_BF16_FLAGS.items() if flag in flags), None)
    except OSError:
        pass
    return None


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
