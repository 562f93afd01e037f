"""The training state a checkpoint carries (``state.pt``): creating it, saving it, and continuing a run from it.

:class:`Stateful` is the one place the optimizer, scheduler, grad scaler and EMA live (the training loop reads
them from there).  ``state.pt`` holds the optimizer, scheduler, grad-scaler and EMA state, the training-only
auxiliary head (if any), the run's progress counters (:class:`RunProgress`), the batch layout it was written with,
and - for a mid-epoch checkpoint - every rank's RNG state and partial-epoch statistics.  Everything is tensors and
plain containers (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from atlas_vision.train.aux_head import WithAuxiliaryHead
from atlas_vision.train.checkpoint import find_checkpoint, load_state, load_weights
from atlas_vision.train.factory import create_optimizer, create_scheduler
from atlas_vision.train.metrics import EpochStats

if TYPE_CHECKING:
    from timm.scheduler.scheduler import Scheduler
    from timm.utils import ModelEmaV3

    from atlas_vision.train.config import TrainConfig

log = logging.getLogger("atlas_vision.train")

STATE_FORMAT = 1


def _zero_totals() -> dict[str, float]:
    return {"images": 0.0, "train_s": 0.0, "data_s": 0.0, "skipped": 0.0, "wall_s": 0.0}


@dataclass
class RunProgress:
    """Counters of a run that survive a restart."""

    epoch: int = 0
    """Epoch in progress (0-based); with ``batch_in_epoch == 0`` also the number of completed epochs."""
    batch_in_epoch: int = 0
    """Micro-batches of ``epoch`` done (0 = at an epoch boundary)."""
    update_step: int = 0
    """Optimizer updates done."""
    best_top1: float = -1.0
    best_epoch: int = -1
    totals: dict[str, float] = field(default_factory=_zero_totals)
    """Run-wide sums: training images, training seconds, data-wait seconds, skipped images, wall seconds."""
    last_train: dict[str, float] = field(default_factory=dict)
    """Reduced statistics of the last completed epoch (``train_loss`` etc.)."""


@dataclass(frozen=True)
class BatchLayout:
    """How micro-batches map to ranks and updates; a mid-epoch position is only meaningful under the same layout."""

    world_size: int
    batch_size: int
    accum: int


@dataclass
class Stateful:
    """The objects whose state a checkpoint stores besides the weights."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler | None
    scaler: torch.amp.GradScaler | None
    ema: ModelEmaV3 | None
    aux_head: nn.Module | None = None
    """The training-only head of an auxiliary target (:mod:`atlas_vision.train.aux_head`), or ``None``."""


@dataclass
class ResumePoint:
    """Where a restored run continues: its counters and, mid-epoch, this rank's RNG state and partial statistics."""

    progress: RunProgress
    rng: dict[str, Any] | None
    stats: EpochStats | None


_MISMATCH = re.compile(
    r"size mismatch for (?P<key>[\w.]+): copying a param with shape torch.Size\((?P<ckpt>\[[^\]]*\])\) from "
    r"checkpoint, the shape in current model is torch.Size\((?P<model>\[[^\]]*\])\)"
)


def load_weights_explained(model: nn.Module, checkpoint: Path, what: str = "this run's model") -> None:
    """:func:`~atlas_vision.train.checkpoint.load_weights`, with PyTorch's multi-line ``RuntimeError`` for weights
    that do not fit turned into one ``ValueError`` naming the first key and both shapes."""
    try:
        load_weights(model, checkpoint)
    except RuntimeError as err:
        match = _MISMATCH.search(str(err))
        detail = (
            f"size mismatch for {match['key']}: {match['ckpt']} in the checkpoint, {match['model']} in the model"
            if match
            else " ".join(line.strip() for line in str(err).splitlines() if line.strip())
        )
        raise ValueError(f"the weights of checkpoint {str(checkpoint)!r} do not fit {what}: {detail}") from None


def build_state(
    progress: RunProgress,
    layout: BatchLayout,
    objects: Stateful,
    per_rank: list[tuple[dict[str, Any] | None, dict[str, float] | None]],
) -> dict[str, Any]:
    """The ``state.pt`` dict; ``per_rank`` = every rank's ``(rng state, epoch stats)`` (empty at an epoch boundary)."""
    return {
        "format": STATE_FORMAT,
        **asdict(progress),
        **asdict(layout),
        "optimizer": objects.optimizer.state_dict(),
        "scheduler": objects.scheduler.state_dict() if objects.scheduler is not None else None,
        "scaler": objects.scaler.state_dict() if objects.scaler is not None else None,
        "ema": objects.ema.module.state_dict() if objects.ema is not None else None,
        "aux_head": objects.aux_head.state_dict() if objects.aux_head is not None else None,
        "rng": [rng for rng, _ in per_rank],
        "epoch_stats": [stats for _, stats in per_rank],
    }


def restore(checkpoint: Path, objects: Stateful, layout: BatchLayout, rank: int) -> ResumePoint:
    """Load weights, optimizer, scaler and EMA from ``checkpoint`` into ``objects`` and return where to continue.

    The scheduler is *not* restored: the caller rebuilds it from the current config at ``update_step`` (see
    :mod:`atlas_vision.train.trainer`).  A mid-epoch checkpoint written under another :class:`BatchLayout` restarts
    its epoch from the first batch (with a warning).
    """
    state = load_state(checkpoint)
    if state.get("format") != STATE_FORMAT:
        raise ValueError(
            f"checkpoint {str(checkpoint)!r} has state format {state.get('format')!r}, expected {STATE_FORMAT}"
        )
    load_weights_explained(objects.model, checkpoint)
    saved_aux = state.get("aux_head")
    if (saved_aux is None) != (objects.aux_head is None):
        raise ValueError(
            f"checkpoint {str(checkpoint)!r} was trained {'without' if saved_aux is None else 'with'} an auxiliary "
            f"target and this run is {'with' if saved_aux is None else 'without'} one: resume with the run's own "
            "optim.aux_weight (0 = off), or start a new run from these weights with --model.init_from"
        )
    if objects.aux_head is not None:
        objects.aux_head.load_state_dict(saved_aux)
    objects.optimizer.load_state_dict(state["optimizer"])
    if objects.scaler is not None and state.get("scaler"):
        objects.scaler.load_state_dict(state["scaler"])
    if objects.ema is not None:
        if state.get("ema") is None:
            log.warning("resuming with EMA on from a checkpoint without EMA weights: the EMA restarts from the model")
            objects.ema.module.load_state_dict(objects.model.state_dict())
        else:
            objects.ema.module.load_state_dict(state["ema"])
    progress = RunProgress(**{name: state[name] for name in RunProgress.__dataclass_fields__})
    rng, stats = None, None
    if progress.batch_in_epoch:
        saved = BatchLayout(**{name: state[name] for name in BatchLayout.__dataclass_fields__})
        if saved == layout:
            rng = state["rng"][rank]
            stats = EpochStats.from_state_dict(state["epoch_stats"][rank])
        else:
            log.warning(
                "mid-epoch checkpoint written with %s, now %s: restarting epoch %d from its first batch",
                saved,
                layout,
                progress.epoch + 1,
            )
            progress.batch_in_epoch = 0
    log.info(
        "resuming from %s: epoch %d, micro-batch %d, update %d",
        checkpoint,
        progress.epoch + 1,
        progress.batch_in_epoch,
        progress.update_step,
    )
    return ResumePoint(progress=progress, rng=rng, stats=stats)


def build_training_state(
    model: nn.Module,
    cfg: TrainConfig,
    use_scaler: bool,
    layout: BatchLayout,
    rank: int,
    updates_per_epoch: int,
    aux_head: nn.Module | None = None,
) -> tuple[Stateful, ResumePoint]:
    """Optimizer, grad scaler and EMA for ``model`` (the optimizer also over ``aux_head``, the training-only head
    of an auxiliary target, if given); restored from ``cfg.run.resume`` if set; then the scheduler.

    The schedule follows the *current* config: the learning rates of the config are put back after the optimizer
    state is loaded and the scheduler is rebuilt and set to the resumed update count, so ``--epochs 60`` on resume
    extends a cosine schedule instead of leaving it at ``min_lr``.  With an unchanged config this is exactly the
    uninterrupted schedule.
    """
    optimizer = create_optimizer(model if aux_head is None else WithAuxiliaryHead(model, aux_head), cfg.optim)
    device_type = next(model.parameters()).device.type
    scaler = torch.amp.GradScaler(device_type) if use_scaler else None
    ema = None
    if cfg.optim.ema_decay > 0:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=cfg.optim.ema_decay)
    objects = Stateful(model=model, optimizer=optimizer, scheduler=None, scaler=scaler, ema=ema, aux_head=aux_head)

    config_lrs = [group["lr"] for group in optimizer.param_groups]
    resume = ResumePoint(RunProgress(), None, None)
    if cfg.run.resume:
        resume = restore(find_checkpoint(cfg.run.resume), objects, layout, rank)
    for group, lr in zip(optimizer.param_groups, config_lrs):
        group["lr"] = group["lr_initial"] = lr
    objects.scheduler = create_scheduler(optimizer, cfg.schedule, updates_per_epoch)
    if objects.scheduler is not None and resume.progress.update_step > 0:
        objects.scheduler.step_update(num_updates=resume.progress.update_step)
    return objects, resume
