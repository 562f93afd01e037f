"""The inner loops: :func:`train_one_epoch` and :func:`evaluate`, as plain functions over explicit objects.

Gradient accumulation (``accum`` micro-batches per optimizer update):

* micro-batches are grouped from the start of each epoch; the last group of an epoch may be shorter - it is never
  carried into the next epoch (the reference code let leftovers roll over);
* each micro-batch loss is divided by its group's size, so an update averages its micro-batches;
* under DDP, non-final micro-steps run inside ``no_sync()`` (one gradient all-reduce per update, not per micro-step);
* after each update: the global gradient norm (after unscaling, before clipping; its epoch mean and max go to
  ``metrics.jsonl``), optional gradient clipping, optimizer + scaler step, scheduler ``step_update(update_step)``,
  EMA update, and an all-ranks check of the stop flag (SIGINT/SIGTERM).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from atlas_vision.train.distributed import DistContext, all_reduce_max_flag, all_reduce_sum
from atlas_vision.train.factory import Precision
from atlas_vision.train.metrics import EpochStats, EvalAccumulator, EvalResult
from atlas_vision.train.progress import EpochProgress
from atlas_vision.train.rng import capture_rng_state
from atlas_vision.train.signals import StopRequest
from atlas_vision.train.state import Stateful


@dataclass
class TrainParts:
    """Everything one training step touches (built once by :func:`atlas_vision.train.setup.build_run`).

    The optimizer, scheduler, grad scaler, EMA and the plain model live in ``state`` only (the one place a
    checkpoint saves and restores them); ``model`` is the module called for training."""

    model: nn.Module
    """The module called for training: ``state.model``, possibly DDP- and/or compile-wrapped."""
    ddp: nn.parallel.DistributedDataParallel | None
    state: Stateful
    mixup: Any
    """timm ``Mixup`` or ``None``."""
    loss_fn: nn.Module
    precision: Precision
    channels_last: bool
    clip_grad: float
    aux_weight: float | None
    """Weight of the auxiliary-target loss; ``None`` = no auxiliary target (``model`` then returns logits only,
    otherwise ``(logits, aux_logits)`` and the labels are ``[B, 2]``: label, auxiliary target)."""
    accum: int
    ctx: DistContext
    dummy_chw: tuple[int, int, int]
    """Input shape used for a micro-batch whose images were all unreadable (keeps DDP ranks in step)."""


@dataclass
class EpochResult:
    """Where :func:`train_one_epoch` stopped."""

    update_step: int
    batches_done: int
    """Micro-batches of this epoch consumed up to the last optimizer update."""
    interrupted: bool
    boundary_rng: dict[str, Any]
    """RNG states right after the last update (what a mid-epoch checkpoint must store)."""


def _to_device(images: torch.Tensor, labels: torch.Tensor, parts: TrainParts) -> tuple[torch.Tensor, torch.Tensor]:
    device = parts.ctx.device
    non_blocking = device.type == "cuda"
    images = images.to(device, non_blocking=non_blocking)
    labels = labels.to(device, non_blocking=non_blocking)
    if parts.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels


def _grad_norm(model: nn.Module) -> torch.Tensor:
    """Global L2 norm of ``model``'s gradients (0-dim; ``0`` if none has a gradient), as ``clip_grad_norm_`` sees it."""
    return torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])


def _micro_step(
    parts: TrainParts,
    images: torch.Tensor,
    labels: torch.Tensor,
    n: int,
    group_size: int,
    final: bool,
    pending_loss: torch.Tensor,
) -> int:
    """Forward + backward of one micro-batch (``n`` images), loss weighted by ``1 / group_size``; adds the
    summed loss to ``pending_loss`` and returns the number of images used.  Under DDP a non-final micro-step skips the gradient all-reduce (``no_sync``).

    An empty micro-batch (all images unreadable) under DDP still runs a zero-weight step on a dummy input in eval
    mode (no BatchNorm statistics update), so that every rank takes part in the gradient all-reduce.
    """
    dummy = n == 0
    if dummy:
        label_shape = (2,) if parts.aux_weight is None else (2, 2)
        images, labels = torch.zeros(2, *parts.dummy_chw), torch.zeros(label_shape, dtype=torch.long)
        parts.model.eval()
    images, labels = _to_device(images, labels, parts)
    if parts.mixup is not None and not dummy:
        if n % 2:  # timm Mixup needs an even batch (odd only after dropping unreadable images)
            images, labels, n = images[:-1], labels[:-1], n - 1
        images, targets = parts.mixup(images, labels)
    else:
        targets = labels
    sync = nullcontext() if (final or parts.ddp is None) else parts.ddp.no_sync()
    with sync:
        with parts.precision.autocast():
            if parts.aux_weight is None:
                loss = total = parts.loss_fn(parts.model(images), targets)
            else:  # targets [B, 2]: (label, auxiliary target); mixup is refused with an auxiliary target
                logits, aux_logits = parts.model(images)
                loss = parts.loss_fn(logits, targets[:, 0])
                total = loss + parts.aux_weight * F.cross_entropy(aux_logits.float(), targets[:, 1])
        scaled = total * (0.0 if dummy else 1.0 / group_size)
        scaler = parts.state.scaler
        (scaler.scale(scaled) if scaler is not None else scaled).backward()
    if dummy:
        parts.model.train()
    pending_loss += loss.detach().to(torch.float64) * n  # the task's loss only: comparable with val_loss
    return n


def train_one_epoch(
    parts: TrainParts,
    loader: DataLoader,
    *,
    start_batch: int,
    update_step: int,
    stats: EpochStats,
    stop: StopRequest,
    progress: EpochProgress,
    on_update: Callable[[int, int], None],
) -> EpochResult:
    """Train over ``loader`` (which already skips the ``start_batch`` micro-batches consumed before a resume).

    Args:
        start_batch: micro-batches of this epoch already done (a multiple of ``accum``).
        update_step: optimizer updates done so far in the run.
        stats: this epoch's running statistics (updated in place at every optimizer update).
        on_update: called as ``on_update(update_step, batches_done)`` after every update (checkpoint hooks).
    """
    ctx, accum, state = parts.ctx, parts.accum, parts.state
    optimizer = state.optimizer
    total = start_batch + len(loader)
    parts.model.train()
    optimizer.zero_grad(set_to_none=True)
    boundary_rng = capture_rng_state(ctx.device)
    batches_done = start_batch
    pending_loss = torch.zeros((), device=ctx.device, dtype=torch.float64)
    pending: list[tuple[int, int, float, float]] = []  # (images, skipped, data_s, compute_s) per micro-batch
    it: Iterator = iter(loader)
    i = start_batch
    while i < total:
        t0 = time.perf_counter()
        try:
            images, labels, skipped = next(it)
        except StopIteration:
            break
        except Exception:
            if not stop.requested:  # e.g. DataLoader workers killed by the same Ctrl-C: stop at the last update
                raise
            optimizer.zero_grad(set_to_none=True)
            return EpochResult(update_step, batches_done, True, boundary_rng)
        t1 = time.perf_counter()
        group_size = min(accum, total - (i // accum) * accum)
        final = (i + 1) % accum == 0 or i + 1 == total
        n = len(labels)  # labels [B] or, with an auxiliary target, [B, 2]
        if n > 0 or parts.ddp is not None:
            try:
                n = _micro_step(parts, images, labels, n, group_size, final, pending_loss)
            except Exception:
                # a SIGTERM sent to the whole process group (timeout(1), a cluster scheduler) also kills the
                # DataLoader workers, and PyTorch reports that from its SIGCHLD handler wherever the main process
                # is, usually in forward/backward: stop at the last update as for a signal between batches
                if not stop.requested:
                    raise
                optimizer.zero_grad(set_to_none=True)
                return EpochResult(update_step, batches_done, True, boundary_rng)
        # else: every image was unreadable; single-process, so simply nothing to learn from this micro-batch
        pending.append((n, int(skipped), t1 - t0, time.perf_counter() - t1))
        i += 1
        if not final:
            continue

        lr = optimizer.param_groups[0]["lr"]
        if state.scaler is not None:
            state.scaler.unscale_(optimizer)  # the norm (and the clip) in the loss's own units
        grad_norm = _grad_norm(state.model)  # before clipping: a spike shows in metrics.jsonl even when clipped
        if parts.clip_grad > 0:
            torch.nn.utils.clip_grads_with_norm_(state.model.parameters(), parts.clip_grad, grad_norm)
        if state.scaler is not None:
            state.scaler.step(optimizer)
            state.scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        update_step += 1
        if state.scheduler is not None:
            state.scheduler.step_update(num_updates=update_step)
        if state.ema is not None:
            state.ema.update(state.model, step=update_step)

        loss_sum, grad_norm_value = torch.stack([pending_loss, grad_norm.to(pending_loss)]).tolist()  # one sync
        group_images = sum(p[0] for p in pending)
        if not math.isfinite(loss_sum):
            raise FloatingPointError(
                f"non-finite training loss {loss_sum} at update {update_step}; lower optim.lr, "
                f"set optim.clip_grad or use run.precision fp32"
            )
        compute_s = time.perf_counter() - t1 + sum(p[3] for p in pending[:-1])
        for k, (n_k, skipped_k, data_k, _) in enumerate(pending):
            stats.add(loss_sum if k == 0 else 0.0, n_k, skipped_k, data_k, compute_s if k == 0 else 0.0)
        stats.add_update(grad_norm_value)
        pending_loss.zero_()
        pending.clear()
        batches_done = i
        boundary_rng = capture_rng_state(ctx.device)
        elapsed = stats.compute_s + stats.data_s
        progress.update(
            group_images,
            update_step,
            loss_sum / max(group_images, 1),
            lr,
            stats.images / elapsed if elapsed > 0 else 0.0,
        )
        on_update(update_step, batches_done)
        if all_reduce_max_flag(stop.requested, ctx):
            return EpochResult(update_step, batches_done, True, boundary_rng)
    return EpochResult(update_step, batches_done, False, boundary_rng)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    ctx: DistContext,
    num_classes: int,
    class_names: list[str],
    precision: Precision,
    channels_last: bool = False,
) -> EvalResult:
    """Top-1/top-k accuracy, mean CE loss and the confusion matrix over the whole validation set.

    ``model`` must be the plain (non-DDP) module: ranks may hold different numbers of batches (see
    :class:`ShardSampler`), so no collective may run inside the loop; the sums are all-reduced once at the end.
    """
    was_training = model.training
    model.eval()
    acc = EvalAccumulator(num_classes=num_classes, device=ctx.device)
    for images, labels, skipped in loader:
        if labels.numel() == 0:
            acc.skipped += int(skipped)
            continue
        images = images.to(ctx.device)
        labels = labels.to(ctx.device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with precision.autocast():
            logits = model(images)
        logits = logits.float()
        acc.update(logits, labels, F.cross_entropy(logits, labels, reduction="sum"), int(skipped))
    model.train(was_training)
    return acc.result(all_reduce_sum(acc.tensor(), ctx), class_names)
