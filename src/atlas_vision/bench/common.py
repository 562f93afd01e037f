"""Settings shared by every benchmark command, and parsing of the values the command line gives as strings."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from atlas_vision.ops import Size2D

DTYPE_CHOICES: tuple[str, ...] = ("fp32", "bf16", "fp16")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> ``cuda`` when available else ``cpu``; ``cpu``, ``cuda``, ``cuda:N`` as given (checked)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return device


@dataclass(frozen=True, kw_only=True)
class BenchSettings:
    """Where and how to measure.

    Attributes:
        device: measurement device.
        dtype: ``fp32``, or ``bf16`` / ``fp16`` autocast (fp32 parameters).
        warmup: untimed calls before timing.
        iters: timed calls (the median is reported).
        seeds: training seeds of the accuracy runs (timings use the first).
        out: output directory (CSV, PNG, training runs).
    """

    device: torch.device
    dtype: str
    warmup: int
    iters: int
    seeds: tuple[int, ...]
    out: Path

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_CHOICES:
            raise ValueError(f"--dtype must be one of {', '.join(DTYPE_CHOICES)}, got {self.dtype!r}")
        if self.dtype == "fp16" and self.device.type == "cpu":
            raise ValueError("--dtype fp16 needs a CUDA device (CPU autocast supports bf16 only)")
        if self.warmup < 0 or self.iters < 1:
            raise ValueError(f"need --warmup >= 0 and --iters >= 1, got {self.warmup} and {self.iters}")
        if not self.seeds or any(s < 0 for s in self.seeds):
            raise ValueError(f"--seeds must list one or more integers >= 0, got {self.seeds}")


def parse_int_list(text: str, option: str, minimum: int = 1) -> tuple[int, ...]:
    """``"1,2,3"`` -> ``(1, 2, 3)``; every value ``>= minimum``."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{option} must be a comma-separated list of integers, got {text!r}") from None
    if not values or any(v < minimum for v in values):
        raise ValueError(f"{option} needs integers >= {minimum}, got {text!r}")
    return values


def parse_size(text: str, option: str) -> Size2D:
    """``"64"`` -> ``(64, 64)``; ``"48x80"`` -> ``(48, 80)``."""
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"{option}: {text!r} is not a size (N or HxW)") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) < 1:
        raise ValueError(f"{option}: {text!r} is not a size (N or HxW, positive)")
    return (values[0], values[1])


def parse_token_grid(text: str, option: str = "--tokens") -> Size2D:
    """A token count (a perfect square, e.g. ``4096`` -> 64x64) or an explicit grid ``HxW`` (e.g. ``48x96``)."""
    text = text.strip().lower()
    if "x" in text:
        return parse_size(text, option)
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"{option}: {text!r} is neither a token count nor an HxW grid") from None
    if n < 1:
        raise ValueError(f"{option}: expected a positive token count (e.g. 4096) or an HxW grid, got {n}")
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{option}: {n} tokens is not a perfect square; give the grid as HxW (e.g. 32x64)")
    return (side, side)


def parse_list(text: str, option: str, choices: tuple[str, ...]) -> tuple[str, ...]:
    """Comma-separated names, each one of ``choices`` (order kept, duplicates dropped)."""
    names = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    unknown = [n for n in names if n not in choices]
    if not names or unknown:
        raise ValueError(f"{option}: unknown value(s) {unknown or [text]}; choose from {', '.join(choices)}")
    return names
