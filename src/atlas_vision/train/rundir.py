"""The run directory: its layout, its default name and the files written at the end of a run.

::

    RUN/
      config.yaml          fully resolved TrainConfig
      metrics.jsonl        one JSON object per evaluation
      summary.json         final numbers (accuracies in %)
      loss.png accuracy.png confusion_matrix.png (<= 20 classes)
      checkpoints/last/    latest checkpoint (every epoch, every run.ckpt_every_steps, on SIGINT/SIGTERM)
      checkpoints/best/    checkpoint with the best val top-1
      tensorboard/         (run.tensorboard)
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atlas_vision.train.checkpoint import CHECKPOINT_DIR
from atlas_vision.train.metrics import EvalResult
from atlas_vision.train.plots import MAX_LABELLED_CLASSES, plot_confusion, plot_curves

if TYPE_CHECKING:
    from atlas_vision.train.config import TrainConfig
    from atlas_vision.train.distributed import DistContext
    from atlas_vision.train.state import RunProgress


def default_run_dir(name: str) -> Path:
    """``runs/<name>`` or ``runs/<YYYYmmdd-HHMMSS>``."""
    return Path("runs") / (name or time.strftime("%Y%m%d-%H%M%S"))


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON via a temporary file and ``os.replace`` (readers never see a half-written file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class RunDir:
    """Paths inside a run directory."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def last(self) -> Path:
        return self.checkpoints / "last"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    def create(self) -> None:
        self.checkpoints.mkdir(parents=True, exist_ok=True)

    def write_plots(self, records: list[dict[str, Any]], final_eval: EvalResult | None) -> list[Path]:
        """Loss and accuracy curves; the confusion matrix of ``final_eval`` if it has at most 20 classes."""
        written = plot_curves(records, self.path)
        if final_eval is not None and len(final_eval.class_names) <= MAX_LABELLED_CLASSES:
            written.append(
                plot_confusion(
                    final_eval.confusion,
                    final_eval.class_names,
                    self.path / "confusion_matrix.png",
                    title=f"val confusion matrix (top-1 {final_eval.top1:.2f}%)",
                )
            )
        return written


def build_summary(
    cfg: TrainConfig,
    progress: RunProgress,
    final_eval: EvalResult | None,
    records: list[dict[str, Any]],
    *,
    wall_s: float,
    ctx: DistContext,
    precision: str,
    num_params: int,
    interrupted: bool,
    exit_code: int,
) -> dict[str, Any]:
    """The ``summary.json`` of a run (accuracies in %; ``train_loss`` = mean loss of the last completed epoch)."""
    last_val = next((r for r in reversed(records) if "val_top1" in r), {})

    def val(key: str, attr: str) -> Any:
        return getattr(final_eval, attr) if final_eval is not None else last_val.get(key)

    totals, busy = progress.totals, progress.totals["train_s"]
    return {
        "val_top1": val("val_top1", "top1"),
        "val_top5": val("val_top5", "top5"),
        "val_loss": val("val_loss", "loss"),
        "val_count": val("val_count", "count"),
        "best_val_top1": progress.best_top1 if progress.best_top1 >= 0 else None,
        "best_epoch": progress.best_epoch if progress.best_epoch >= 0 else None,
        "train_loss": progress.last_train.get("train_loss"),
        "epochs": records[-1]["epoch"] if records else progress.epoch,
        "steps": progress.update_step,
        "wall_s": wall_s,
        "train_s": busy,
        "images_per_s": totals["images"] / busy if busy > 0 else 0.0,
        "data_wait_frac": totals["data_s"] / busy if busy > 0 else 0.0,
        "skipped_images": int(totals["skipped"]) + (final_eval.skipped if final_eval is not None else 0),
        "world_size": ctx.world_size,
        "device": str(ctx.device),
        "precision": precision,
        "model": cfg.model.name,
        "num_params": num_params,
        "task": cfg.data.task,
        "run_dir": cfg.run.out,
        "interrupted": interrupted,
        "exit_code": exit_code,
    }
