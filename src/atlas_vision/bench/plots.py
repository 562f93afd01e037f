"""PNG plots of benchmark rows (matplotlib, Agg backend: no display needed).

* :func:`plot_time_vs_tokens`: time vs tokens on log-log axes, one line per label, with the fitted scaling exponent
  ``p`` of ``time ~ N^p`` (least squares on log-log points) in the legend;
* :func:`plot_accuracy_vs_time`: mean top-1 vs mean training time per label, with the spread over seeds as error
  bars;
* :func:`plot_throughput_vs_resolution`: images/s and peak memory vs resolution per model.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fit_exponent(tokens: Sequence[float], times: Sequence[float]) -> float | None:
    """Slope ``p`` of ``log(time) = p log(N) + c`` (least squares); ``None`` with fewer than two distinct ``N``."""
    points = [(math.log(n), math.log(t)) for n, t in zip(tokens, times) if n > 0 and t > 0]
    if len({x for x, _ in points}) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def plot_time_vs_tokens(series: dict[str, list[tuple[float, float]]], path: Path, ylabel: str, title: str) -> dict:
    """One log-log line per label from ``(tokens, time)`` points; returns ``{label: exponent or None}``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    exponents: dict[str, float | None] = {}
    for label, points in sorted(series.items()):
        points = sorted(p for p in points if p[1] is not None and p[1] > 0)
        if not points:
            continue
        p = fit_exponent([n for n, _ in points], [t for _, t in points])
        exponents[label] = p
        ax.plot(
            [n for n, _ in points],
            [t for _, t in points],
            marker="o",
            label=f"{label} (p={p:.2f})" if p is not None else label,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens N")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if exponents:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return exponents


def plot_accuracy_vs_time(points: dict[str, list[tuple[float, float]]], path: Path, title: str) -> None:
    """``points[label]`` = ``(train_s, val_top1)`` per seed; plots the means with the min-max spread."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for label, values in sorted(points.items()):
        values = [v for v in values if v[0] is not None and v[1] is not None]
        if not values:
            continue
        ts, accs = [t for t, _ in values], [a for _, a in values]
        mt, ma = statistics.fmean(ts), statistics.fmean(accs)
        ax.errorbar(
            [mt],
            [ma],
            xerr=[[mt - min(ts)], [max(ts) - mt]],
            yerr=[[ma - min(accs)], [max(accs) - ma]],
            marker="o",
            capsize=3,
            label=label,
        )
        ax.annotate(label, (mt, ma), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("val top-1 (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_throughput_vs_resolution(rows: list[dict], path: Path, title: str) -> None:
    """Two panels: training images/s and peak memory (MiB) vs resolution, one line per model."""
    plt = _pyplot()
    by_model: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row.get("status") == "ok":
            by_model[row["model"]].append(row)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for model, items in sorted(by_model.items()):
        items.sort(key=lambda r: r["resolution"])
        res = [r["resolution"] for r in items]
        ax1.plot(res, [r["images_per_s"] for r in items], marker="o", label=model)
        ax2.plot(res, [r["peak_mem_mb"] for r in items], marker="o", label=model)
    for ax, ylabel in ((ax1, "train images/s"), (ax2, "peak memory (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("resolution (px)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    if by_model:
        ax1.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
