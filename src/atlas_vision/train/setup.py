"""Setting up a training run: ``build_run(cfg, ctx) -> RunSetup``, everything :class:`~atlas_vision.train.trainer.Trainer`
needs before its first epoch.

In order: resolve the run directory and claim it (lock); check a resume against its checkpoint (epochs, model and
classes); seed; build the data, the model, the loaders; create (or restore) the training state - optimizer, grad
scaler, EMA, scheduler, progress counters (:func:`~atlas_vision.train.state.build_training_state`); wrap the model
for DDP / ``torch.compile``; write ``config.yaml`` and open ``metrics.jsonl``.  If any step fails, the run
directory is released (and removed if this run created it and no checkpoint exists).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from atlas_vision.data import Datasets, build_datasets
from atlas_vision.environment import cpu_fast_bf16, env_metadata
from atlas_vision.train.aux_head import WithAuxiliaryHead, create_aux_head
from atlas_vision.train.checkpoint import find_checkpoint, read_meta, run_dir_of
from atlas_vision.train.config import TrainConfig, accumulation_steps
from atlas_vision.train.config_io import dump_yaml
from atlas_vision.train.distributed import DistContext, ResumableDistributedSampler, all_gather_objects
from atlas_vision.train.factory import (
    Precision,
    build_model,
    check_model_name,
    count_parameters,
    create_mixup,
    create_train_loader,
    create_train_loss,
    create_val_loader,
    resolve_precision,
    wrap_model,
)
from atlas_vision.train.init_weights import init_from_weights
from atlas_vision.train.loop import TrainParts
from atlas_vision.train.metrics import MetricsLog
from atlas_vision.train.rng import seed_everything
from atlas_vision.train.rundir import RunDir, RunDirClaim, default_run_dir, start_run_files
from atlas_vision.train.state import BatchLayout, ResumePoint, RunProgress, Stateful, build_training_state

log = logging.getLogger("atlas_vision.train")


@dataclass
class RunSetup:
    """The objects of one run, built by :func:`build_run`."""

    cfg: TrainConfig
    """The resolved config (run directory filled in, data paths absolute): what ``config.yaml`` holds."""
    ctx: DistContext
    run_dir: RunDir
    claim: RunDirClaim | None
    """Rank 0's lock on the run directory (``None`` on other ranks)."""
    layout: BatchLayout
    precision: Precision
    data: Datasets
    train_loader: DataLoader
    sampler: ResumableDistributedSampler
    val_loader: DataLoader
    updates_per_epoch: int
    state: Stateful
    """Model, optimizer, scheduler, scaler and EMA: the one place they are held."""
    parts: TrainParts
    resume: ResumePoint
    config_yaml: str
    environment: dict[str, Any]
    """What produced this run (versions, git commit, device, threads), captured before training starts."""
    metrics: MetricsLog | None
    """``metrics.jsonl`` (rank 0 only)."""

    @property
    def progress(self) -> RunProgress:
        return self.resume.progress

    @property
    def batches_per_epoch(self) -> int:
        return len(self.train_loader)

    def release(self, failed: bool) -> None:
        """Give up the run directory (see :meth:`RunDirClaim.release`)."""
        if self.metrics is not None:
            self.metrics.close()
        if self.claim is not None:
            self.claim.release(failed)

    def meta(self, progress: RunProgress, val_top1: float | None) -> dict[str, Any]:
        """``meta.json`` of a checkpoint: what eval/predict need without the training config tree."""
        d, cfg = self.data, self.cfg
        return {
            "model": {"name": cfg.model.name, "kwargs": cfg.model.kwargs},
            "num_classes": d.num_classes,
            "in_chans": d.in_chans,
            "class_names": list(d.class_names),
            "mean": list(d.mean),
            "std": list(d.std),
            "img_size": list(cfg.data.img_size),
            "interpolation": cfg.data.interpolation,
            "task": cfg.data.task,
            "epoch": progress.epoch,
            "batch_in_epoch": progress.batch_in_epoch,
            "update_step": progress.update_step,
            "val_top1": val_top1,
            "best_val_top1": progress.best_top1 if progress.best_top1 >= 0 else None,
            "ema": self.state.ema is not None,
        }

    def log_summary(self) -> None:
        """The set-up in four log lines (run directory, model, data with any auxiliary target, batch layout)."""
        cfg, ctx, d, lay = self.cfg, self.ctx, self.data, self.layout
        log.info("run directory: %s", self.run_dir.path)
        params = count_parameters(self.state.model) / 1e6
        log.info(
            "model %s: %.2fM parameters; device %s, precision %s, world size %d",
            cfg.model.name,
            params,
            ctx.device,
            self.precision.name,
            ctx.world_size,
        )
        log.info(
            "data %s %s: %d train / %d val images, %d classes%s",
            cfg.data.task,
            "x".join(str(v) for v in cfg.data.input_size),
            len(d.train),
            len(d.val),
            d.num_classes,
            f"; training also on an auxiliary target ({d.aux_classes} classes, loss weight "
            f"{cfg.optim.aux_weight:g}; --optim.aux_weight 0 turns it off)"
            if d.aux_classes
            else "",
        )
        log.info(
            "batch: micro-batch %d x world %d x accumulation %d = %d images per optimizer update; "
            "%d updates per epoch, %d epochs",
            lay.batch_size,
            lay.world_size,
            lay.accum,
            lay.batch_size * lay.world_size * lay.accum,
            self.updates_per_epoch,
            cfg.schedule.epochs,
        )


def _resolve_out(cfg: TrainConfig, ctx: DistContext) -> Path:
    out = ""
    if ctx.is_main:
        if cfg.run.out:
            out = cfg.run.out
        elif cfg.run.resume:
            out = str(run_dir_of(find_checkpoint(cfg.run.resume)))
        else:
            out = str(default_run_dir(cfg.run.name))
    return Path(all_gather_objects(out, ctx)[0])  # rank 0's (timestamped) choice wins


def _resolved(cfg: TrainConfig, out: Path) -> TrainConfig:
    """``cfg`` with the run directory filled in and the data and ``model.init_from`` paths made absolute, so the
    ``config.yaml`` written next to every checkpoint works from any working directory (eval, predict, resume)."""
    data = cfg.data
    absolute = {
        name: str(Path(getattr(data, name)).resolve())
        for name in ("root", "cache_dir", "labels_csv")
        if getattr(data, name, None)
    }
    model = cfg.model
    if model.init_from:
        model = dataclasses.replace(model, init_from=str(Path(model.init_from).resolve()))
    return dataclasses.replace(
        cfg, data=dataclasses.replace(data, **absolute), model=model, run=dataclasses.replace(cfg.run, out=str(out))
    )


def check_resume_epochs(checkpoint: Path, epochs: int) -> None:
    """Refuse ``--resume`` with ``schedule.epochs`` below the epochs the checkpoint has already trained."""
    meta = read_meta(checkpoint)
    done, partial = int(meta.get("epoch", 0)), int(meta.get("batch_in_epoch", 0))
    if done > epochs or (done == epochs and partial):
        trained = f"{done} epochs" + (f" and part of epoch {done + 1}" if partial else "")
        raise ValueError(
            f"config key 'schedule.epochs': the checkpoint {str(checkpoint)!r} has already trained {trained}, "
            f"more than --epochs {epochs}; resume with --epochs {done + (1 if partial else 0)} or more, or evaluate "
            f"it with `atlas-vision eval --checkpoint {run_dir_of(checkpoint)}`"
        )


def check_resume_fits(checkpoint: Path, cfg: TrainConfig, data: Datasets) -> None:
    """Refuse to resume a checkpoint of another model or class count, naming the key, both values and what fits
    (instead of a ``size mismatch for head.bias`` deep in ``load_state_dict``)."""
    meta = read_meta(checkpoint)
    model, where = meta.get("model", {}), f"the checkpoint {str(checkpoint)!r}"
    if model.get("name") != cfg.model.name:
        raise ValueError(
            f"config key 'model.name': {where} holds a {model.get('name')!r} model, this run builds "
            f"{cfg.model.name!r}; resume with --model.name {model.get('name')}, or start a new run with another --out"
        )
    if dict(model.get("kwargs", {})) != dict(cfg.model.kwargs):
        raise ValueError(
            f"config key 'model.kwargs': {where} was trained with model.kwargs {model.get('kwargs')}, this run has "
            f"{cfg.model.kwargs}; resume with the checkpoint's model.kwargs, or start a new run with another --out"
        )
    for key, ours in (("num_classes", data.num_classes), ("in_chans", data.in_chans)):
        if key in meta and meta[key] != ours:
            raise ValueError(
                f"{where} has {key} = {meta[key]} but the data of this run ({cfg.data.task}) gives {ours}; resume "
                f"with the data it was trained on (the data section of {str(checkpoint / 'config.yaml')!r}), or "
                f"start a new run with another --out"
            )


def _claim(run_dir: RunDir, ctx: DistContext) -> RunDirClaim | None:
    """Rank 0 locks the run directory; every rank raises rank 0's error, if any."""
    claim, error = None, ""
    if ctx.is_main:
        try:
            claim = RunDirClaim(run_dir)
        except ValueError as err:
            error = str(err)
    error = next((e for e in all_gather_objects(error, ctx) if e), "")
    if error:
        raise ValueError(error)
    return claim


def build_run(cfg: TrainConfig, ctx: DistContext) -> RunSetup:
    """Everything a run needs before its first epoch (see the module docstring); rank 0 holds the run directory's
    lock until :meth:`RunSetup.release`."""
    check_model_name(cfg.model.name)  # before a run directory exists: a typo leaves nothing behind
    if cfg.run.resume:
        check_resume_epochs(find_checkpoint(cfg.run.resume), cfg.schedule.epochs)
    out = _resolve_out(cfg, ctx)
    cfg = _resolved(cfg, out)
    run_dir = RunDir(out)
    claim = _claim(run_dir, ctx)  # first: a directory in use is refused as such
    try:
        if not cfg.run.resume and (run_dir.last.exists() or run_dir.best.exists()):
            raise ValueError(
                f"config key 'run.out': run directory {str(out)!r} already holds a checkpoint; continue it "
                f"with --resume {out}, or choose another --out"
            )
        return _build(cfg, ctx, run_dir, claim)
    except BaseException:
        if claim is not None:
            claim.release(failed=True)
        raise


def _build(cfg: TrainConfig, ctx: DistContext, run_dir: RunDir, claim: RunDirClaim | None) -> RunSetup:
    layout = BatchLayout(ctx.world_size, cfg.optim.batch_size, accumulation_steps(cfg.optim, ctx.world_size))
    precision = resolve_precision(cfg.run.precision, ctx.device)
    fast_bf16 = cpu_fast_bf16() if cfg.run.precision == "auto" and ctx.device.type == "cpu" else None
    if fast_bf16 is not None:
        log.info("run.precision auto: fp32 on CPU; this CPU has %s (docs/benchmarks.md section 8)", fast_bf16)
    if cfg.optim.mixing and cfg.optim.batch_size % 2:
        raise ValueError(
            f"config key 'optim.batch_size': mixup/cutmix need an even micro-batch, got {cfg.optim.batch_size}"
        )

    log.info("setting up run directory %s: %s data, model %s", run_dir.path, cfg.data.task, cfg.model.name)
    seed_everything(cfg.run.seed)
    data = build_datasets(cfg.data, seed=cfg.run.seed, with_aux_target=cfg.optim.aux_weight > 0)
    if data.aux_classes and cfg.optim.mixing:
        raise ValueError(
            f"config key 'optim.aux_weight': mixup/cutmix mix the labels but not the {cfg.data.task} task's "
            f"auxiliary target; turn the target off with --optim.aux_weight 0 (it is {cfg.optim.aux_weight})"
        )
    if data.num_classes < 2:
        raise ValueError(
            f"the {cfg.data.task} training data has {data.num_classes} class ({', '.join(data.class_names)}): "
            f"a classifier needs at least 2 (for task 'folder', one sub-folder per class under data.root/train)"
        )
    if cfg.run.resume:
        check_resume_fits(find_checkpoint(cfg.run.resume), cfg, data)
    channels = data.in_chans if cfg.data.channels is None else cfg.data.channels  # None: the files decide
    if data.in_chans != channels:  # the data and the model must agree on the channel count
        raise ValueError(
            f"config key 'data.in_chans': the {cfg.data.task} data gives {data.in_chans}-channel images, "
            f"data.in_chans asks for {cfg.data.channels}"
        )
    model = build_model(cfg.model, data.num_classes, channels, ctx.device)
    aux_head = create_aux_head(model, data.aux_classes, ctx.device) if data.aux_classes else None
    if cfg.model.init_from and not cfg.run.resume:  # a resume restores the run's own weights
        init_from_weights(model, cfg.model.init_from)
    train_loader, sampler = create_train_loader(
        data.train, cfg.optim.batch_size, cfg.data.num_workers, cfg.run.seed, ctx
    )
    eval_batch = cfg.run.eval_batch_size or 2 * cfg.optim.batch_size
    val_loader = create_val_loader(data.val, eval_batch, cfg.data.num_workers, ctx)
    updates_per_epoch = math.ceil(len(train_loader) / layout.accum)
    state, resume = build_training_state(
        model, cfg, precision.use_scaler, layout, ctx.rank, updates_per_epoch, aux_head
    )

    train_model, ddp = wrap_model(
        model if aux_head is None else WithAuxiliaryHead(model, aux_head), ctx, cfg.model.compile
    )
    parts = TrainParts(
        model=train_model,
        ddp=ddp,
        state=state,
        mixup=create_mixup(cfg.optim, data.num_classes),
        loss_fn=create_train_loss(cfg.optim),
        precision=precision,
        channels_last=cfg.model.channels_last,
        clip_grad=cfg.optim.clip_grad,
        aux_weight=cfg.optim.aux_weight if aux_head is not None else None,
        accum=layout.accum,
        ctx=ctx,
        dummy_chw=(data.in_chans, *cfg.data.input_size),
    )
    config_yaml = dump_yaml(cfg)
    environment = env_metadata(ctx.device, precision.name, cfg.run.seed)
    metrics = None
    if ctx.is_main:
        resumed_from = run_dir_of(find_checkpoint(cfg.run.resume)) if cfg.run.resume else None
        metrics = start_run_files(run_dir, config_yaml, resumed_from, resume.progress.update_step, cfg.run.tensorboard)
    setup = RunSetup(
        cfg=cfg,
        ctx=ctx,
        run_dir=run_dir,
        claim=claim,
        layout=layout,
        precision=precision,
        data=data,
        train_loader=train_loader,
        sampler=sampler,
        val_loader=val_loader,
        updates_per_epoch=updates_per_epoch,
        state=state,
        parts=parts,
        resume=resume,
        config_yaml=config_yaml,
        environment=environment,
        metrics=metrics,
    )
    setup.log_summary()
    return setup
