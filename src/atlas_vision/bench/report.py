"""Benchmark rows -> CSV, each row stamped with the environment it was measured in.

Every CSV the benchmarks write has its measurement columns first, then :data:`ENV_COLUMNS` (device, its name, torch /
timm / atlas-vision versions, git commit, dtype, seed, date, CPU threads), so a number never travels without what
produced it. Missing values are written as empty cells.
"""

from __future__ import annotations

import csv
import datetime as _dt
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

ENV_COLUMNS: tuple[str, ...] = (
    "device",
    "device_name",
    "torch",
    "timm",
    "atlas_vision",
    "git_commit",
    "dtype",
    "seed",
    "date",
    "threads",
)


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


def device_name(device: torch.device) -> str:
    """GPU model name on CUDA, the CPU description otherwise."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def env_metadata(device: torch.device, dtype: str, seed: int | str) -> dict[str, Any]:
    """The :data:`ENV_COLUMNS` values of this process."""
    import timm

    from atlas_vision import __version__

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


def write_csv(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike[str], columns: Sequence[str]) -> Path:
    """Write ``rows`` with exactly ``columns`` (in order) to ``path``; floats get 4 significant decimals.

    Raises:
        ValueError: if a row has a key that is not a column (a typo would otherwise silently drop data).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = list(rows)
    for row in rows:
        extra = sorted(set(row) - set(columns))
        if extra:
            raise ValueError(f"row has keys that are not CSV columns: {extra}")
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(v) for k, v in row.items()})
    return path


def read_csv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Rows of a CSV written by :func:`write_csv` (values as strings)."""
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def _fmt(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e6 else f"{value:.6g}"
    return value
