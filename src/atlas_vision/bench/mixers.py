"""``atlas-vision bench mixers``: every token mixer in the same network -- speed/memory vs tokens, accuracy vs time.

For each variant (a mixer, or an ablation setting of MSA) the engine :func:`run_variants` measures the block stack
(``MixerNet.forward_body``) at every token grid (:func:`~atlas_vision.bench.speed.measure_block_stack`), and, unless
speed-only, trains the whole network on a built-in task under one shared budget per seed
(:func:`~atlas_vision.bench.accuracy.train_and_evaluate`). Rows carry a ``measure`` column: ``speed`` rows have the
timings, ``accuracy`` rows ``val_top1`` / ``train_s``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from atlas_vision.bench.accuracy import TrainBudget, train_and_evaluate
from atlas_vision.bench.common import BenchSettings
from atlas_vision.bench.plots import plot_accuracy_vs_time, plot_time_vs_tokens
from atlas_vision.bench.report import ENV_COLUMNS, env_metadata, write_csv
from atlas_vision.bench.speed import measure_block_stack
from atlas_vision.mixers import MixerKind, MixerNetConfig, WindowConfig
from atlas_vision.ops import Size2D, ceil_div, to_2tuple

MEASURE_COLUMNS: tuple[str, ...] = (
    "measure",
    "tokens",
    "grid_h",
    "grid_w",
    "dim",
    "depth",
    "heads",
    "window",
    "batch",
    "fwd_ms",
    "fwd_bwd_ms",
    "peak_mem_mb",
    "peak_mem_method",
    "params",
    "status",
    "task",
    "img_size",
    "epochs",
    "val_top1",
    "train_s",
)
MIXER_COLUMNS: tuple[str, ...] = ("mixer", *MEASURE_COLUMNS, *ENV_COLUMNS)


@dataclass(frozen=True, kw_only=True)
class MixerShape:
    """The shared network shape: equal width, depth, heads, MLP ratio and patch size for every mixer.

    Attributes:
        dim, depth, num_heads, patch_size: as in :class:`~atlas_vision.mixers.MixerNetConfig`.
        window: window of window / swin / hat / msa (``K = kh * kw`` tokens); also the ``window`` column of every
            row (the shared shape, whichever mixer).
        pool_stride: MSA pooling stride.
        segment_length: dilated attention's first segment (``None`` = ``K``, the same tokens per attention group
            as a window).
    """

    dim: int = 192
    depth: int = 4
    num_heads: int = 6
    patch_size: int = 4
    window: Size2D = (16, 16)
    pool_stride: Size2D = (4, 4)
    segment_length: int | None = None

    def net_kwargs(self, mixer: MixerKind, **overrides: Any) -> dict[str, Any]:
        """``mixer_net`` keyword arguments for ``mixer`` (validated by building the config once)."""
        kwargs: dict[str, Any] = {
            "mixer": mixer.value,
            "dim": self.dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "patch_size": self.patch_size,
            "window": self.window,
        }
        if mixer is MixerKind.MSA:
            kwargs["pool_stride"] = self.pool_stride
        if mixer is MixerKind.DILATED:
            kwargs["segment_length"] = self.segment_length or self.window[0] * self.window[1]
        kwargs.update(overrides)
        MixerNetConfig.from_options(**kwargs)  # fail early, with the config's message
        return kwargs


@dataclass(frozen=True)
class Variant:
    """One network to measure: ``labels`` go into the row (e.g. ``{"mixer": "swin"}``), ``net_kwargs`` build it."""

    name: str
    labels: dict[str, str]
    net_kwargs: dict[str, Any] = field(default_factory=dict)


def _num(value: float | None) -> str:
    return "      n/a" if value is None else f"{value:9.2f}"


def _write_partial(rows: list[dict[str, Any]], settings: BenchSettings) -> None:
    """``DIR/rows.partial.csv``: every row measured so far (columns = the union of their keys)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    write_csv(rows, settings.out / "rows.partial.csv", columns)


def _grid_text(size: Size2D) -> str:
    return f"{size[0]}x{size[1]}"


def _window_text(net_kwargs: dict[str, Any]) -> str:
    """The ``window`` column: the shape's window whichever the mixer (the network's default when not given)."""
    return _grid_text(to_2tuple(net_kwargs.get("window", WindowConfig().window), "window"))


def run_variants(
    variants: list[Variant],
    grids: tuple[Size2D, ...],
    batch: int,
    settings: BenchSettings,
    budget: TrainBudget | None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Speed rows for every variant x grid, then (with a ``budget``) accuracy rows for every variant x seed."""
    rows: list[dict[str, Any]] = []
    speed_env = env_metadata(settings.device, settings.dtype, settings.seeds[0])
    for variant in variants:
        config = MixerNetConfig.from_options(**variant.net_kwargs, num_classes=0)
        window = _window_text(variant.net_kwargs)
        for grid in grids:
            result = measure_block_stack(
                config,
                grid,
                batch,
                settings.device,
                settings.dtype,
                settings.warmup,
                settings.iters,
                seed=settings.seeds[0],
            )
            row = {
                **variant.labels,
                "measure": "speed",
                "tokens": grid[0] * grid[1],
                "grid_h": grid[0],
                "grid_w": grid[1],
                "dim": config.dim,
                "depth": config.depth,
                "heads": config.num_heads,
                "window": window,
                "batch": batch,
                **result.row(),
                **speed_env,
            }
            rows.append(row)
            log(
                f"[speed] {variant.name:<28} {_grid_text(grid):>9} ({grid[0] * grid[1]} tokens): "
                f"fwd {_num(result.fwd_ms)} ms  fwd+bwd {_num(result.fwd_bwd_ms)} ms  "
                f"peak {_num(result.peak_mem_mb)} MiB  [{result.status}]"
            )
    if budget is None:
        return rows
    p = MixerNetConfig.from_options(**variants[0].net_kwargs).patch_size if variants else 1
    tokens = ceil_div(budget.img_size[0], p) * ceil_div(budget.img_size[1], p)
    for variant in variants:
        config = MixerNetConfig.from_options(**variant.net_kwargs, num_classes=0)
        window = _window_text(variant.net_kwargs)
        for seed in settings.seeds:
            run_dir = settings.out / "runs" / f"{variant.name}-s{seed}"
            summary = train_and_evaluate(
                "mixer_net", variant.net_kwargs, budget, seed, str(settings.device), settings.dtype, run_dir
            )
            rows.append(
                {
                    **variant.labels,
                    "measure": "accuracy",
                    "tokens": tokens,
                    "dim": config.dim,
                    "depth": config.depth,
                    "heads": config.num_heads,
                    "window": window,
                    "batch": budget.batch_size,
                    "params": summary.get("num_params"),
                    "status": "ok",
                    "task": budget.task,
                    "img_size": _grid_text(budget.img_size),
                    "epochs": summary["epochs"],
                    "val_top1": summary["val_top1"],
                    "train_s": summary["train_s"],
                    **env_metadata(settings.device, settings.dtype, seed),
                }
            )
            log(
                f"[train] {variant.name:<28} seed {seed}: val_top1 {_num(summary['val_top1'])} %  "
                f"train {_num(summary['train_s'])} s"
            )
            _write_partial(rows, settings)  # the rows so far survive an interrupted run
    return rows


def write_outputs(
    rows: list[dict[str, Any]],
    settings: BenchSettings,
    stem: str,
    columns: tuple[str, ...],
    name_of: Callable[[dict[str, Any]], str],
    title: str,
) -> dict[str, float | None]:
    """``DIR/<stem>.csv``, ``DIR/<stem>_time_vs_tokens.png`` and (with accuracy rows)
    ``DIR/<stem>_accuracy_vs_time.png``; returns the fitted time exponents per variant."""
    write_csv(rows, settings.out / f"{stem}.csv", columns)
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    accuracy: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        if row["measure"] == "speed" and row["status"] == "ok":
            series[name_of(row)].append((row["tokens"], row["fwd_bwd_ms"]))
        elif row["measure"] == "accuracy":
            accuracy[name_of(row)].append((row["train_s"], row["val_top1"]))
    exponents = plot_time_vs_tokens(
        series,
        settings.out / f"{stem}_time_vs_tokens.png",
        "forward+backward (ms)",
        f"{title}: time vs tokens ({settings.device.type}, {settings.dtype})",
    )
    if accuracy:
        plot_accuracy_vs_time(accuracy, settings.out / f"{stem}_accuracy_vs_time.png", f"{title}: accuracy vs time")
    return exponents


def mixer_variants(mixers: tuple[MixerKind, ...], shape: MixerShape) -> list[Variant]:
    """One :class:`Variant` per mixer with the shared shape."""
    return [Variant(m.value, {"mixer": m.value}, shape.net_kwargs(m)) for m in mixers]


def run_mixers(
    mixers: tuple[MixerKind, ...],
    grids: tuple[Size2D, ...],
    shape: MixerShape,
    batch: int,
    settings: BenchSettings,
    budget: TrainBudget | None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """The whole ``bench mixers`` command: rows, ``mixers.csv`` and the plots in ``settings.out``."""
    rows = run_variants(mixer_variants(mixers, shape), grids, batch, settings, budget, log)
    exponents = write_outputs(rows, settings, "mixers", MIXER_COLUMNS, lambda r: r["mixer"], "token mixers")
    for name, p in exponents.items():
        log(f"[fit] {name:<10} time ~ N^{p:.2f}" if p is not None else f"[fit] {name:<10} (one token count only)")
    return rows
