"""Accuracy under a fixed training budget: one :func:`atlas_vision.train.run_training` run per model and seed.

Every model in a comparison gets the same data (a built-in procedural task), the same epochs, batch size, optimizer
and schedule; only ``model.name`` / ``model.kwargs`` differ. The run directories are kept under the benchmark's
output folder (``runs/<label>-s<seed>``) with the trainer's own summary, metrics and config.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas_vision.data import DataConfig
from atlas_vision.ops import Size2D


@dataclass(frozen=True, kw_only=True)
class TrainBudget:
    """The shared training budget of an accuracy comparison.

    Attributes:
        task: built-in data task (``longrange``, ``pathfinder``, ``fake``).
        img_size: ``(h, w)`` in pixels.
        epochs: training epochs.
        train_samples: training images per epoch.
        val_samples: validation images.
        batch_size: micro-batch per step.
        lr: peak learning rate (AdamW, cosine schedule with warm-up).
        warmup_epochs: linear warm-up length in epochs.
        num_workers: data-loader workers.
    """

    task: str = "longrange"
    img_size: Size2D = (64, 64)
    epochs: int = 1
    train_samples: int = 512
    val_samples: int = 256
    batch_size: int = 32
    lr: float = 1e-3
    warmup_epochs: float = 0.0
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.train_samples < 1 or self.val_samples < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs, train_samples, val_samples and batch_size must be >= 1, got {self.epochs}, "
                f"{self.train_samples}, {self.val_samples}, {self.batch_size}"
            )
        if self.lr <= 0 or self.warmup_epochs < 0 or self.num_workers < 0:
            raise ValueError(
                f"need lr > 0, warmup_epochs >= 0, num_workers >= 0; got {self.lr}, "
                f"{self.warmup_epochs}, {self.num_workers}"
            )
        self.data_config()  # the task's own checks (e.g. pathfinder sizes), before any measurement starts

    def data_config(self) -> DataConfig:
        """The :class:`~atlas_vision.data.DataConfig` of this budget (raises ``ValueError`` for invalid settings)."""
        return DataConfig(
            task=self.task,
            img_size=self.img_size,
            train_samples=self.train_samples,
            val_samples=self.val_samples,
            num_workers=self.num_workers,
        )


def train_and_evaluate(
    model_name: str,
    model_kwargs: dict[str, Any],
    budget: TrainBudget,
    seed: int,
    device: str,
    precision: str,
    out_dir: Path,
) -> dict[str, Any]:
    """Train ``model_name`` (a timm name) under ``budget``; returns ``val_top1`` (%), ``train_s``, ``epochs``,
    ``num_params`` and ``run_dir`` from the trainer's summary.

    Args:
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``fp32``, ``bf16`` or ``fp16``.
        out_dir: the run directory to create.
    """
    import atlas_vision.mixers  # noqa: F401  (registers mixer_net with timm)
    from atlas_vision.train import ModelConfig, OptimConfig, RunConfig, ScheduleConfig, TrainConfig, run_training

    cfg = TrainConfig(
        data=budget.data_config(),
        model=ModelConfig(name=model_name, kwargs=dict(model_kwargs)),
        optim=OptimConfig(batch_size=budget.batch_size, lr=budget.lr),
        schedule=ScheduleConfig(epochs=budget.epochs, warmup_epochs=budget.warmup_epochs),
        run=RunConfig(seed=seed, device=device, precision=precision, out=str(out_dir), progress="never", plots=False),
    )
    summary = run_training(cfg)
    if summary.get("interrupted"):  # SIGINT/SIGTERM: stop the benchmark, never record a partly trained model
        print(
            f"benchmark stopped: training of {model_name} (seed {seed}) was interrupted; its checkpoint is in "
            f"{out_dir} (the rows finished before are in rows.partial.csv)",
            file=sys.stderr,
        )
        raise SystemExit(summary.get("exit_code") or 130)
    return {key: summary.get(key) for key in ("val_top1", "train_s", "epochs", "num_params", "run_dir")}
