"""Evaluate or load a trained checkpoint without the training machinery.

``evaluate_checkpoint`` rebuilds the model from a checkpoint's ``meta.json`` + weights, builds the validation set
from the checkpoint's data config (optionally replaced), and writes ``eval.json``, ``confusion_matrix.json`` and
``confusion_matrix.png``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from atlas_vision.data import DataConfig, build_datasets
from atlas_vision.train.checkpoint import CONFIG_FILE, find_checkpoint, load_state, read_meta, run_dir_of
from atlas_vision.train.config import ModelConfig, TrainConfig
from atlas_vision.train.config_io import apply_overrides, build_config, to_dict
from atlas_vision.train.distributed import DistContext, setup_distributed, teardown_distributed
from atlas_vision.train.factory import create_model, create_val_loader, resolve_precision
from atlas_vision.train.loop import evaluate
from atlas_vision.train.plots import plot_confusion
from atlas_vision.train.rundir import write_json_atomic
from atlas_vision.train.state import load_weights_explained

log = logging.getLogger("atlas_vision.train")


@dataclass
class LoadedCheckpoint:
    """A model rebuilt from a checkpoint directory, plus what is needed to feed it."""

    model: nn.Module
    path: Path
    meta: dict[str, Any]
    config: TrainConfig

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", ema: bool = False, prefer: str = "best"
) -> LoadedCheckpoint:
    """Rebuild the model of a checkpoint (run directory or checkpoint directory) in eval mode on ``device``.

    Args:
        path: a run directory (``checkpoints/<prefer>`` is used, falling back to the other) or checkpoint directory.
        ema: load the EMA weights from ``state.pt`` instead of ``model.safetensors`` (the run must have used EMA).
        prefer: ``"best"`` or ``"last"`` when ``path`` is a run directory.
    """
    ckpt = find_checkpoint(path, prefer=prefer)
    meta = read_meta(ckpt)
    config = build_config(TrainConfig, ckpt / CONFIG_FILE)
    model_cfg = ModelConfig(name=meta["model"]["name"], kwargs=dict(meta["model"]["kwargs"]))
    model = create_model(model_cfg, num_classes=meta["num_classes"], in_chans=meta["in_chans"])
    if ema:
        state = load_state(ckpt)
        if state.get("ema") is None:
            raise ValueError(f"checkpoint {str(ckpt)!r} has no EMA weights (the run had optim.ema_decay = 0)")
        try:
            model.load_state_dict(state["ema"])
        except RuntimeError as err:
            raise ValueError(f"the EMA weights of checkpoint {str(ckpt)!r} do not fit its meta.json: {err}") from None
    else:
        load_weights_explained(
            model, ckpt, what=f"the model its meta.json describes ({model_cfg.name}, {meta['num_classes']} classes)"
        )
    model.to(torch.device(device)).eval()
    return LoadedCheckpoint(model=model, path=ckpt, meta=meta, config=config)


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: DataConfig | None = None,
    *,
    device: str = "auto",
    batch_size: int = 64,
    ema: bool = False,
    prefer: str = "best",
    out: str | Path | None = None,
    precision: str = "auto",
) -> dict[str, Any]:
    """Evaluate a checkpoint on a validation set; returns (and, on rank 0, writes) the result.

    Args:
        checkpoint: run directory or checkpoint directory.
        data: data config of the validation set; ``None`` = the checkpoint's own (same task, size and seed).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (under ``torchrun`` every rank evaluates its shard).
        batch_size: evaluation batch size per device.
        ema: evaluate the EMA weights.
        prefer: ``best`` or ``last`` checkpoint of a run directory.
        out: directory for ``eval.json``, ``confusion_matrix.json`` and ``confusion_matrix.png``; ``None`` =
            ``RUN/eval``; an empty string writes nothing.

    Returns:
        ``top1``, ``top5`` (%), ``loss``, ``count``, ``skipped``, ``per_class_accuracy``, ``confusion``,
        ``class_names``, ``checkpoint``, ``data``.
    """
    ctx: DistContext = setup_distributed(device)
    try:
        loaded = load_checkpoint(checkpoint, ctx.device, ema=ema, prefer=prefer)
        data_cfg = data if data is not None else loaded.config.data
        datasets = build_datasets(data_cfg, seed=loaded.config.run.seed)
        if datasets.num_classes != loaded.meta["num_classes"]:
            raise ValueError(
                f"the checkpoint predicts {loaded.meta['num_classes']} classes but data.task "
                f"{data_cfg.task!r} has {datasets.num_classes}"
            )
        loader = create_val_loader(datasets.val, batch_size, data_cfg.num_workers, ctx)
        result = evaluate(
            loaded.model,
            loader,
            ctx,
            datasets.num_classes,
            list(datasets.class_names),
            resolve_precision(precision, ctx.device),
        )
        report = result.to_json()
        if data_cfg.task == "slide_features":  # accuracy, balanced accuracy, ROC-AUC, per class
            from atlas_vision.slidelearn.evaluation import evaluate_slides

            report["slide_metrics"] = evaluate_slides(
                loaded.model, loader, ctx, list(datasets.class_names), resolve_precision(precision, ctx.device)
            )
        report.update(checkpoint=str(loaded.path), data=to_dict(data_cfg), ema=ema)
        if ctx.is_main and out != "":
            out_dir = Path(out) if out is not None else run_dir_of(loaded.path) / "eval"
            write_eval_outputs(report, out_dir)
            report["out"] = str(out_dir)
        return report
    finally:
        teardown_distributed(ctx)


def write_eval_outputs(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """``eval.json`` (everything), ``confusion_matrix.json`` and ``confusion_matrix.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "eval.json", report)
    write_json_atomic(
        out_dir / "confusion_matrix.json",
        {
            "class_names": report["class_names"],
            "confusion": report["confusion"],
            "rows": "true class",
            "columns": "predicted class",
        },
    )
    png = plot_confusion(
        report["confusion"],
        report["class_names"],
        out_dir / "confusion_matrix.png",
        title=f"confusion matrix (top-1 {report['top1']:.2f}%)",
    )
    return [out_dir / "eval.json", out_dir / "confusion_matrix.json", png]


def checkpoint_data_config(path: str | Path, prefer: str = "best") -> DataConfig:
    """The data config a checkpoint was trained with (from its ``config.yaml``)."""
    return build_config(TrainConfig, find_checkpoint(path, prefer=prefer) / CONFIG_FILE).data


def replace_data(base: DataConfig, overrides: Sequence[tuple[str, Sequence[str]]]) -> DataConfig:
    """``base`` with dotted ``data.*`` overrides applied (validated like the training CLI)."""
    return apply_overrides(TrainConfig, {"data": to_dict(base)}, overrides).data
