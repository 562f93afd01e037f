"""PNG plots of a run: loss curves, accuracy curves and the confusion matrix (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

MAX_LABELLED_CLASSES = 20


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _plottable(value: float | None, yscale: str) -> float | None:
    """``value``, or ``None`` (a gap in the curve) where it is missing or, on a log scale, not positive."""
    return None if value is None or (yscale == "log" and value <= 0) else value


def plot_curves(records: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Write ``loss.png`` (train and val loss), ``accuracy.png`` (val top-1/top-5) and ``grad_norm.png`` (the epoch's
    mean and max gradient norm before clipping, log scale) against epoch."""
    if not records:
        return []
    plt = _pyplot()
    epochs = [r["epoch"] for r in records]
    written = []
    for name, keys, ylabel, yscale in (
        ("loss.png", ("train_loss", "val_loss"), "loss", "linear"),
        ("accuracy.png", ("val_top1", "val_top5"), "accuracy (%)", "linear"),
        ("grad_norm.png", ("grad_norm_mean", "grad_norm_max"), "gradient L2 norm before clipping", "log"),
    ):
        series = {key: [_plottable(r.get(key), yscale) for r in records] for key in keys}
        series = {key: ys for key, ys in series.items() if any(y is not None for y in ys)}
        if not series:  # e.g. grad_norm.png of a run resumed from a version that did not log the norm
            continue
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for key, ys in series.items():
            ax.plot(epochs, ys, marker="o", markersize=3, label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_yscale(yscale)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out_dir / name
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def plot_confusion(
    confusion: Sequence[Sequence[int]], class_names: Sequence[str], path: Path, title: str = "confusion matrix"
) -> Path:
    """Write a row-normalised confusion-matrix heat map (rows = true class); cells and ticks are labelled for at
    most :data:`MAX_LABELLED_CLASSES` classes."""
    import numpy as np

    plt = _pyplot()
    counts = np.asarray(confusion, dtype=np.float64)
    n = counts.shape[0]
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    size = min(3.0 + 0.45 * n, 14.0)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    im = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if n <= MAX_LABELLED_CLASSES:
        ax.set_xticks(range(n), labels=list(class_names), rotation=45, ha="right")
        ax.set_yticks(range(n), labels=list(class_names))
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    f"{int(counts[i, j])}",
                    ha="center",
                    va="center",
                    color="white" if rates[i, j] > 0.5 else "black",
                    fontsize=8,
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
