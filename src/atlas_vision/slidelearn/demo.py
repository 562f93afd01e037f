"""The slide-learning demo: generate synthetic slides, embed them with ``slide embed``, train three slide heads with
the ordinary training pipeline, and report their slide metrics (``atlas-vision slide-demo``).

Steps (each with a progress bar), all under ``OUT/``:

1. ``slides/slide_XXXX.tif`` -- pyramidal JPEG TIFFs of the order task (:mod:`~atlas_vision.slidelearn.synthetic`);
2. ``features/slide_XXXX/`` -- ``slide embed`` run folders (``features.zarr``, ``tissue.png``, ``heatmap.png``, ...),
   a randomly initialised backbone (no pretrained weights exist here), one region per strip, overlap 0;
3. ``labels.csv`` -- ``slide_id,label,split`` (the first ``train_fraction`` of the slides train, the rest validate);
4. ``runs/<head>/`` -- one ``atlas-vision train`` run per head (``data.task: slide_features``) and its
   ``eval/eval.json`` with the slide metrics;
5. ``maps/`` -- contribution maps of a few validation slides per head, ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from atlas_vision.slidelearn.synthetic import CLASS_NAMES, SlideTaskParams, write_task_slide


@dataclass(frozen=True)
class HeadRecipe:
    """How the demo trains one head."""

    model: str
    lr: float
    epochs: int
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo. The defaults are the measured run of ``docs/slide-learning.md``.

    Attributes:
        slides: number of slides (train + val).
        train_fraction: share of the slides used for training.
        task: slide geometry (level 0).
        embed_mpp: resolution at which ``slide embed`` reads (the TIFF's level 1 by default).
        backbone: timm model of ``slide embed`` (random init from ``seed``).
        feature_stage: the stage of ``features.zarr`` the heads read.
        batch_size: training micro-batch of every head.
        heads: one recipe per head.
        seed: data and initialisation seed.
        map_slides: validation slides drawn in ``maps/``.
    """

    slides: int = 200
    train_fraction: float = 0.75
    task: SlideTaskParams = field(default_factory=SlideTaskParams)
    embed_mpp: float = 2.0
    backbone: str = "atlas_tiny"
    feature_stage: int = 1
    batch_size: int = 16
    heads: tuple[HeadRecipe, ...] = (
        HeadRecipe("slide_meanpool", 3e-3, 30),
        HeadRecipe("slide_abmil", 1e-3, 30),
        HeadRecipe("slide_atlas", 3e-3, 15),
    )
    seed: int = 0
    map_slides: int = 3

    def __post_init__(self) -> None:
        if self.slides < 4:
            raise ValueError(f"slides must be >= 4 (train and val need both classes), got {self.slides}")
        if not 0 < self.train_fraction < 1:
            raise ValueError(f"train_fraction must be in (0, 1), got {self.train_fraction}")

    @property
    def region_size(self) -> int:
        """``slide embed`` region side at ``embed_mpp``: one strip of the task."""
        return round(self.task.strip * self.task.mpp / self.embed_mpp)


def _bar(total: int, desc: str, unit: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr)


def generate_slides(cfg: DemoConfig, out: Path) -> list[tuple[str, int]]:
    """Write the slides (skipping files already there); returns ``[(slide_id, label), ...]``."""
    from atlas_vision.slidelearn.synthetic import slide_spec

    folder = out / "slides"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    with _bar(cfg.slides, "generate slides", "slide") as bar:
        for i in range(cfg.slides):
            slide_id = f"slide_{i:04d}"
            path = folder / f"{slide_id}.tif"
            if path.is_file():
                label = slide_spec(cfg.task, cfg.seed, i).label
            else:
                _, spec = write_task_slide(path.with_suffix(".tmp.tif"), cfg.task, cfg.seed, i)
                path.with_suffix(".tmp.tif").replace(path)
                label = spec.label
            rows.append((slide_id, label))
            bar.update()
    return rows


def embed_all(cfg: DemoConfig, out: Path, slide_ids: list[str], device: str = "cpu") -> Path:
    """``slide embed`` every slide into ``OUT/features`` (finished slides are skipped, as in the CLI)."""
    from atlas_vision.slide.model import load_slide_model
    from atlas_vision.slide.run import EmbedOptions, embed_slide
    from atlas_vision.train.distributed import setup_distributed, teardown_distributed

    features = out / "features"
    features.mkdir(parents=True, exist_ok=True)
    options = EmbedOptions(
        model=cfg.backbone,
        seed=cfg.seed,
        mpp=cfg.embed_mpp,
        region_size=cfg.region_size,
        overlap=0,
        dtype="float16",
        thumbnail_size=512,
    )
    ctx = setup_distributed(device)
    try:
        model = load_slide_model(options.model, None, None, options.seed, ctx.device)
        with _bar(len(slide_ids), "slide embed", "slide") as bar:
            for slide_id in slide_ids:
                with contextlib.redirect_stderr(io.StringIO()):  # embed's per-slide lines; the bar shows progress
                    embed_slide(out / "slides" / f"{slide_id}.tif", features, options, model, ctx)
                bar.update()
    finally:
        teardown_distributed(ctx)
    return features


def write_labels(rows: list[tuple[str, int]], cfg: DemoConfig, path: Path) -> int:
    """``labels.csv`` with a split column; returns the number of training slides."""
    n_train = max(2, min(len(rows) - 2, round(cfg.train_fraction * len(rows))))
    lines = ["slide_id,label,split"]
    lines += [f"{sid},{CLASS_NAMES[label]},{'train' if i < n_train else 'val'}" for i, (sid, label) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return n_train


def train_head(cfg: DemoConfig, recipe: HeadRecipe, out: Path, grid_hw: tuple[int, int]) -> dict[str, Any]:
    """One ``atlas-vision train`` run + ``eval`` of ``recipe``; returns the table row."""
    from atlas_vision.train import TrainConfig, evaluate_checkpoint, from_dict, run_training

    run_dir = out / "runs" / recipe.model
    tree = {
        "data": {
            "task": "slide_features",
            "root": str(out / "features"),
            "labels_csv": str(out / "labels.csv"),
            "img_size": list(grid_hw),
            "feature_stage": cfg.feature_stage,
            "num_workers": 0,
        },
        "model": {"name": recipe.model, "kwargs": dict(recipe.kwargs)},
        "optim": {"lr": recipe.lr, "batch_size": cfg.batch_size, "weight_decay": 0.05},
        "schedule": {"epochs": recipe.epochs, "warmup_epochs": 1.0},
        "run": {"out": str(run_dir), "seed": cfg.seed, "device": "cpu", "threads": 0, "eval_every": 5},
    }
    start = time.perf_counter()
    summary = run_training(from_dict(TrainConfig, tree))
    train_s = time.perf_counter() - start
    report = evaluate_checkpoint(run_dir, device="cpu", prefer="last")
    metrics = report["slide_metrics"]
    return {
        "head": recipe.model,
        "params": summary.get("num_params"),
        "epochs": recipe.epochs,
        "train_s": round(train_s, 1),
        "accuracy": metrics["accuracy"],
        "balanced_accuracy": metrics["balanced_accuracy"],
        "roc_auc": metrics["roc_auc"],
        "val_slides": metrics["count"],
        "run_dir": str(run_dir),
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of the demo."""
    lines = [
        "| head | parameters | val accuracy | balanced accuracy | ROC-AUC | training time |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f} %"

    for r in rows:
        params = f"{r['params']:,}" if r["params"] is not None else "?"
        auc = "n/a" if r["roc_auc"] is None else f"{r['roc_auc']:.3f}"
        lines.append(
            f"| `{r['head']}` | {params} | {pct(r['accuracy'])} | {pct(r['balanced_accuracy'])} | {auc} | "
            f"{r['train_s']:.0f} s |"
        )
    return "\n".join(lines)


def run_demo(cfg: DemoConfig, out: str | Path) -> dict[str, Any]:
    """Run every step; returns (and writes to ``OUT/results.json``) the table rows and timings."""
    from atlas_vision.slidelearn.features_source import features_path, grid_shape
    from atlas_vision.slidelearn.maps import draw_maps

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = generate_slides(cfg, out)
    t_generate = time.perf_counter() - t0
    embed_all(cfg, out, [sid for sid, _ in rows])
    t_embed = time.perf_counter() - t0 - t_generate
    n_train = write_labels(rows, cfg, out / "labels.csv")
    channels, h, w = grid_shape(features_path(out / "features", rows[0][0]), cfg.feature_stage)
    table = [train_head(cfg, recipe, out, (h, w)) for recipe in cfg.heads]
    t_heads = time.perf_counter() - t0 - t_generate - t_embed
    val_ids = [sid for sid, _ in rows[n_train:]][: cfg.map_slides]
    maps = draw_maps(out, val_ids, [r["run_dir"] for r in table], cfg.feature_stage)
    result = {
        "config": asdict(cfg),
        "grid": {"channels": channels, "height": h, "width": w},
        "train_slides": n_train,
        "val_slides": len(rows) - n_train,
        "table": table,
        "seconds": {
            "generate": round(t_generate, 1),
            "embed": round(t_embed, 1),
            "heads": round(t_heads, 1),
            "total": round(time.perf_counter() - t0, 1),
        },
        "maps": [str(p) for p in maps],
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "results.md").write_text(format_table(table) + "\n")
    return result
