"""Benchmark rows -> CSV, each row stamped with the environment it was measured in.

Every CSV the benchmarks write has its measurement columns first, then :data:`ENV_COLUMNS` (device, its name, torch /
timm / atlas-vision versions, git commit, dtype, seed, date, CPU threads), so a number never travels without what
produced it. Missing values are written as empty cells.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from atlas_vision.environment import device_name, env_metadata, git_commit

__all__ = ["ENV_COLUMNS", "device_name", "env_metadata", "git_commit", "read_csv", "write_csv"]

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
