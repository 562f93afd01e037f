"""Evaluation results, training-epoch statistics and the metrics log (``metrics.jsonl`` + optional TensorBoard).

All accuracies are percentages in [0, 100].
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from atlas_vision.train.distributed import DistContext, all_reduce_sum


@dataclass
class EvalResult:
    """Validation metrics summed over all ranks (each image counted exactly once)."""

    loss: float
    top1: float
    top5: float
    count: int
    skipped: int
    confusion: list[list[int]]
    """``confusion[true][pred]`` image counts."""
    class_names: list[str]
    topk: int = 5
    """The k of ``top5`` (min(5, number of classes))."""

    @property
    def per_class_accuracy(self) -> dict[str, float]:
        """Top-1 accuracy (%) of each class (NaN-free: a class with no images gets 0)."""
        out = {}
        for i, row in enumerate(self.confusion):
            total = sum(row)
            out[self.class_names[i]] = 100.0 * row[i] / total if total else 0.0
        return out

    def to_json(self) -> dict[str, Any]:
        """The full result including per-class accuracy and the confusion matrix."""
        data = asdict(self)
        data["per_class_accuracy"] = self.per_class_accuracy
        return data


@dataclass
class EvalAccumulator:
    """Sums of one rank's validation batches; :meth:`tensor` packs them for a single all-reduce."""

    num_classes: int
    device: torch.device
    loss_sum: float = 0.0
    correct1: int = 0
    correctk: int = 0
    count: int = 0
    skipped: int = 0
    confusion: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64, device=self.device)

    @property
    def topk(self) -> int:
        return min(5, self.num_classes)

    @torch.no_grad()
    def update(self, logits: torch.Tensor, target: torch.Tensor, loss_sum: torch.Tensor, skipped: int) -> None:
        """Add a batch: ``logits`` [B, num_classes], ``target`` [B] class indices, ``loss_sum`` summed CE."""
        pred_k = logits.topk(self.topk, dim=1).indices  # [B, k]
        hit = pred_k == target[:, None]
        self.correct1 += int(hit[:, 0].sum())
        self.correctk += int(hit.any(dim=1).sum())
        self.count += int(target.numel())
        self.loss_sum += float(loss_sum)
        self.skipped += skipped
        idx = target * self.num_classes + pred_k[:, 0]
        self.confusion += torch.bincount(idx, minlength=self.num_classes**2).view(self.num_classes, -1)

    def tensor(self) -> torch.Tensor:
        """[5 + C*C] float64: loss_sum, correct1, correctk, count, skipped, confusion."""
        head = torch.tensor(
            [self.loss_sum, self.correct1, self.correctk, self.count, self.skipped],
            dtype=torch.float64,
            device=self.device,
        )
        return torch.cat([head, self.confusion.flatten().to(torch.float64)])

    def result(self, reduced: torch.Tensor, class_names: list[str]) -> EvalResult:
        """Turn an all-reduced :meth:`tensor` into an :class:`EvalResult`."""
        r = reduced.cpu()
        loss_sum, c1, ck, count, skipped = (float(v) for v in r[:5])
        confusion = r[5:].round().to(torch.int64).view(self.num_classes, self.num_classes).tolist()
        n = max(count, 1.0)
        return EvalResult(
            loss=loss_sum / n,
            top1=100.0 * c1 / n,
            top5=100.0 * ck / n,
            count=int(count),
            skipped=int(skipped),
            confusion=confusion,
            class_names=list(class_names),
            topk=self.topk,
        )


@dataclass
class EpochStats:
    """Training statistics of one epoch (or of its part so far), summed over micro-batches of this rank."""

    loss_sum: float = 0.0
    """Sum over images of the training loss."""
    images: int = 0
    skipped: int = 0
    compute_s: float = 0.0
    """Seconds spent in forward/backward/step."""
    data_s: float = 0.0
    """Seconds spent waiting for the data loader."""
    micro_batches: int = 0
    grad_norm_sum: float = 0.0
    """Sum over optimizer updates of the global gradient L2 norm before clipping (finite norms only)."""
    grad_norm_max: float = 0.0
    grad_norm_updates: int = 0
    """Updates counted in ``grad_norm_sum``: a non-finite norm (an fp16 overflow, whose update the grad scaler
    skips) is left out of the mean and max."""

    def add_update(self, grad_norm: float) -> None:
        """Record one optimizer update's gradient norm."""
        if math.isfinite(grad_norm):
            self.grad_norm_sum += grad_norm
            self.grad_norm_max = max(self.grad_norm_max, grad_norm)
            self.grad_norm_updates += 1

    def add(self, loss_sum: float, images: int, skipped: int, data_s: float, compute_s: float) -> None:
        self.loss_sum += loss_sum
        self.images += images
        self.skipped += skipped
        self.data_s += data_s
        self.compute_s += compute_s
        self.micro_batches += 1

    def state_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict[str, float]) -> EpochStats:
        return cls(**state)


def reduce_epoch_stats(stats: EpochStats, ctx: DistContext) -> dict[str, float]:
    """Sum an epoch's statistics over ranks: mean ``train_loss``, global ``images_per_s``, ``data_wait_frac``,
    image and skipped counts, per-rank mean ``train_s`` / ``data_s``, and the mean and max gradient norm of the
    epoch's updates (not reduced: DDP averages gradients before they are measured, so every rank holds the same)."""
    t = torch.tensor(
        [stats.loss_sum, stats.images, stats.skipped, stats.data_s, stats.compute_s],
        dtype=torch.float64,
        device=ctx.device,
    )
    loss_sum, images, skipped, data_s, compute_s = all_reduce_sum(t, ctx).tolist()
    busy = data_s + compute_s  # summed over ranks, so world_size * images / busy is the global rate
    return {
        "train_loss": loss_sum / max(images, 1.0),
        "images": images,
        "skipped": skipped,
        "images_per_s": ctx.world_size * images / busy if busy > 0 else 0.0,
        "data_wait_frac": data_s / busy if busy > 0 else 0.0,
        "data_s": data_s / ctx.world_size,
        "train_s": busy / ctx.world_size,
        "grad_norm_mean": stats.grad_norm_sum / max(stats.grad_norm_updates, 1),
        "grad_norm_max": stats.grad_norm_max,
    }


class MetricsLog:
    """Appends one JSON object per evaluation to ``metrics.jsonl`` (rank 0 only) and mirrors scalars to TensorBoard.

    On resume, :meth:`truncate_after` drops lines written after the checkpoint being resumed so no step appears
    twice.
    """

    def __init__(self, path: Path, tensorboard_dir: Path | None = None) -> None:
        self.path = path
        self._tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ImportError(
                    "config key 'run.tensorboard' is true but tensorboard is not installed; "
                    "`pip install atlas-vision[tensorboard]` or set --run.tensorboard false"
                ) from err
            self._tb = SummaryWriter(log_dir=str(tensorboard_dir))

    def truncate_after(self, step: int) -> None:
        """Keep only records with ``step <= step``."""
        if not self.path.exists():
            return
        kept = [
            line
            for line in self.path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step
        ]
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                    self._tb.add_scalar(key, value, global_step=record.get("step", 0))
            self._tb.flush()

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
