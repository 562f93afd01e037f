"""Builders that turn config sections into training objects, using timm's factories (not re-implementations).

* model:      ``timm.create_model`` (after ``import atlas_vision`` registers the Atlas models);
* optimizer:  ``timm.optim.create_optimizer_v2`` (no weight decay on biases / 1-D params, ``no_weight_decay()``);
* scheduler:  ``timm.scheduler.create_scheduler_v2`` with ``step_on_epochs=False`` - stepped once per optimizer update;
* mixup:      ``timm.data.Mixup`` (mixup/cutmix + label smoothing);
* losses:     ``SoftTargetCrossEntropy`` with mixing, ``LabelSmoothingCrossEntropy`` otherwise, plain CE for eval;
* loaders:    train with :class:`ResumableDistributedSampler`, val with :class:`ShardSampler`.
"""

from __future__ import annotations

import difflib
import signal
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from atlas_vision.data import collate_skip_none
from atlas_vision.train.config import ModelConfig, OptimConfig, ScheduleConfig
from atlas_vision.train.distributed import DistContext, ResumableDistributedSampler, ShardSampler

if TYPE_CHECKING:
    from timm.data import Mixup
    from timm.scheduler.scheduler import Scheduler


def check_model_name(name: str) -> None:
    """Raise a ValueError naming close matches if timm (with the Atlas models registered) has no model ``name``."""
    import timm

    from atlas_vision._timm_registration import ensure_registered

    ensure_registered(name)  # the Atlas models, and mixer_net (atlas_vision.mixers) when asked for
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        raise ValueError(
            f"config key 'model.name': unknown model {name!r}; close matches: {close or 'none'} "
            f"(`atlas-vision list-models` lists the Atlas models)"
        )


def create_model(cfg: ModelConfig, num_classes: int, in_chans: int) -> nn.Module:
    """``timm.create_model(cfg.name, num_classes=..., in_chans=..., [drop_path_rate], **cfg.kwargs)``.

    Raises:
        ValueError: unknown model name (with close matches) or keyword arguments the model rejects.
    """
    import timm

    check_model_name(cfg.name)
    extra = dict(cfg.kwargs)
    if cfg.drop_path_rate > 0:
        extra["drop_path_rate"] = cfg.drop_path_rate
    try:
        return timm.create_model(cfg.name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **extra)
    except TypeError as err:
        raise ValueError(
            f"config keys 'model.kwargs'/'model.drop_path_rate': timm.create_model({cfg.name!r}) "
            f"rejected {extra}: {err}"
        ) from err


def build_model(cfg: ModelConfig, num_classes: int, in_chans: int, device: torch.device) -> nn.Module:
    """:func:`create_model` on ``device``, in channels-last format and with gradient checkpointing if configured."""
    model = create_model(cfg, num_classes=num_classes, in_chans=in_chans)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if cfg.grad_checkpointing:
        if not hasattr(model, "set_grad_checkpointing"):
            raise ValueError(f"config key 'model.grad_checkpointing': {cfg.name} has no set_grad_checkpointing()")
        model.set_grad_checkpointing(True)
    return model


def wrap_model(
    model: nn.Module, ctx: DistContext, compile_model: bool
) -> tuple[nn.Module, nn.parallel.DistributedDataParallel | None]:
    """The module to call for training: ``model`` in DDP (under torchrun) and/or ``torch.compile``; and the DDP
    wrapper (``None`` in a single process)."""
    ddp = None
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        # ablation models whose dropped scales leave weights without gradient say so (Atlas.has_unused_parameters)
        find_unused = bool(getattr(model, "has_unused_parameters", False))
        model = ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=device_ids, find_unused_parameters=find_unused
        )
    if compile_model:
        model = torch.compile(model)
    return model, ddp


def create_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """timm's optimizer factory with the config's name, lr, weight decay, momentum, betas and eps."""
    from timm.optim import create_optimizer_v2

    extra: dict[str, object] = {}
    if cfg.betas is not None:
        extra["betas"] = tuple(cfg.betas)
    if cfg.eps is not None:
        extra["eps"] = cfg.eps
    try:
        return create_optimizer_v2(
            model, opt=cfg.opt, lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum, **extra
        )
    except (AssertionError, ValueError, TypeError) as err:
        raise ValueError(f"config key 'optim.opt' = {cfg.opt!r} (with {extra or 'no extra args'}): {err}") from err


def create_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, updates_per_epoch: int) -> Scheduler | None:
    """timm's ``create_scheduler_v2`` stepped per optimizer update; returns the scheduler (or ``None``)."""
    from timm.scheduler import create_scheduler_v2

    try:
        scheduler, _ = create_scheduler_v2(
            optimizer,
            sched=cfg.sched,
            num_epochs=cfg.epochs,
            warmup_epochs=cfg.warmup_epochs,
            min_lr=cfg.min_lr,
            warmup_lr=cfg.warmup_lr,
            step_on_epochs=False,
            updates_per_epoch=updates_per_epoch,
        )
    except (AssertionError, ValueError) as err:
        raise ValueError(f"config key 'schedule.sched' = {cfg.sched!r}: {err}") from err
    return scheduler


def create_mixup(cfg: OptimConfig, num_classes: int) -> Mixup | None:
    """timm ``Mixup`` (batch mode) when mixup or cutmix is on, else ``None``."""
    if not cfg.mixing:
        return None
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=cfg.mixup,
        cutmix_alpha=cfg.cutmix,
        prob=cfg.mixup_prob,
        switch_prob=cfg.mixup_switch_prob,
        mode="batch",
        label_smoothing=cfg.label_smoothing,
        num_classes=num_classes,
    )


def create_train_loss(cfg: OptimConfig) -> nn.Module:
    """Soft-target CE with mixing (targets come from Mixup), label-smoothing CE or plain CE; mean over the batch."""
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if cfg.mixing:
        return SoftTargetCrossEntropy()
    if cfg.label_smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=cfg.label_smoothing)
    return nn.CrossEntropyLoss()


@dataclass(frozen=True)
class Precision:
    """Resolved numeric precision: autocast dtype (``None`` = fp32) and whether a gradient scaler is needed."""

    name: str
    dtype: torch.dtype | None
    device_type: str

    @property
    def use_scaler(self) -> bool:
        return self.dtype is torch.float16

    def autocast(self) -> AbstractContextManager:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def resolve_precision(name: str, device: torch.device) -> Precision:
    """``auto`` -> bf16 autocast on CUDA, fp32 on CPU; ``fp16`` needs CUDA."""
    if name == "auto":
        name = "bf16" if device.type == "cuda" else "fp32"
    if name == "fp16" and device.type != "cuda":
        raise ValueError(f"config key 'run.precision': 'fp16' needs a CUDA device, got {device}; use fp32 or bf16")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
    return Precision(name=name, dtype=dtype, device_type=device.type)


def ignore_sigint_in_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: a terminal Ctrl-C reaches the whole process group; workers ignore it so the
    main process can finish its optimizer update, write a checkpoint and shut them down cleanly."""
    del worker_id
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def create_train_loader(
    dataset: Dataset, batch_size: int, num_workers: int, seed: int, ctx: DistContext
) -> tuple[DataLoader, ResumableDistributedSampler]:
    """Shuffled, sharded, ``drop_last`` train loader; re-seed ``loader.generator`` per epoch for worker seeds."""
    sampler = ResumableDistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, seed=seed)
    if sampler.num_samples < batch_size:
        raise ValueError(
            f"config key 'optim.batch_size': {batch_size} is larger than this rank's "
            f"{sampler.num_samples} training images (dataset of {len(dataset)} over "
            f"{ctx.world_size} rank(s)); lower the batch size or add training samples"
        )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_skip_none,
        drop_last=True,
        pin_memory=ctx.device.type == "cuda",
        generator=torch.Generator(),
        worker_init_fn=ignore_sigint_in_worker,
    )
    return loader, sampler


def create_val_loader(dataset: Dataset, batch_size: int, num_workers: int, ctx: DistContext) -> DataLoader:
    """Unshuffled val loader; rank r takes images r, r + world, ... (every image exactly once, no drop_last)."""
    sampler = ShardSampler(len(dataset), ctx.rank, ctx.world_size)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_skip_none,
        drop_last=False,
        pin_memory=ctx.device.type == "cuda",
        worker_init_fn=ignore_sigint_in_worker,
    )


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
