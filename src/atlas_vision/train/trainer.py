"""``run_training(cfg) -> summary``: the outer training loop (epochs, evaluation, checkpoints, resume, outputs).

Determinism and resume
    At the start of every epoch all random generators are re-seeded from ``(seed, epoch, rank)``, the training order
    is a permutation drawn from ``seed + epoch`` and DataLoader worker seeds come from ``(seed, epoch, rank)``.  So an
    epoch's randomness does not depend on anything before it, and resuming from an epoch-boundary checkpoint
    reproduces an uninterrupted run exactly (on CPU, same thread count).  Mid-epoch checkpoints (SIGINT/SIGTERM,
    ``run.ckpt_every_steps``) also store every rank's live RNG state and partial-epoch statistics and restart the
    sampler at the next micro-batch; they are exact when augmentation is drawn in the main process
    (``data.num_workers: 0``) or per sample (the procedural tasks), and approximately so otherwise.

Learning-rate schedule on resume
    The schedule is rebuilt from the *current* config and set to the resumed update count, so ``--epochs 60`` on
    resume extends a cosine schedule instead of leaving it at ``min_lr``.  With an unchanged config this is exactly
    the uninterrupted schedule.

Order of one epoch: train -> average BatchNorm statistics over ranks -> evaluate (every ``run.eval_every`` epochs
and at the end) -> append to ``metrics.jsonl`` -> ``checkpoints/last`` (-> ``checkpoints/best`` if improved).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from atlas_vision.data import build_datasets
from atlas_vision.train.checkpoint import copy_checkpoint, find_checkpoint, run_dir_of, save_checkpoint
from atlas_vision.train.config import TrainConfig, accumulation_steps
from atlas_vision.train.config_io import dump_yaml
from atlas_vision.train.distributed import (
    DistContext,
    all_gather_objects,
    all_reduce_max_flag,
    setup_distributed,
    teardown_distributed,
)
from atlas_vision.train.factory import (
    count_parameters,
    create_mixup,
    create_model,
    create_optimizer,
    create_scheduler,
    create_train_loader,
    create_train_loss,
    create_val_loader,
    resolve_precision,
)
from atlas_vision.train.loop import TrainParts, evaluate, train_one_epoch
from atlas_vision.train.metrics import EpochStats, EvalResult, MetricsLog, reduce_epoch_stats
from atlas_vision.train.progress import EpochProgress, format_epoch, use_bars
from atlas_vision.train.rng import capture_rng_state, derive_seed, restore_rng_state, seed_everything
from atlas_vision.environment import env_metadata
from atlas_vision.train.rundir import RunDir, build_summary, default_run_dir, write_json_atomic
from atlas_vision.train.signals import StopRequest
from atlas_vision.train.state import BatchLayout, ResumePoint, RunProgress, Stateful, build_state, restore

log = logging.getLogger("atlas_vision.train")


def run_training(cfg: TrainConfig) -> dict[str, Any]:
    """Train according to ``cfg``; returns the summary (also written to ``RUN/summary.json`` by rank 0).

    Works in a single process and under ``torchrun`` (one process per device).  On SIGINT/SIGTERM the run writes
    ``checkpoints/last`` and returns early with ``summary["interrupted"] = True`` and ``summary["exit_code"]``.

    Example:
        >>> cfg = build_config(TrainConfig, "configs/default.yaml", overrides=[("schedule.epochs", ["3"])])
        >>> summary = run_training(cfg)      # {"val_top1": 93.1, "best_val_top1": ..., "train_loss": ..., ...}
    """
    threads = torch.get_num_threads()
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    ctx = setup_distributed(cfg.run.device)
    try:
        return Trainer(cfg, ctx).fit()
    finally:
        teardown_distributed(ctx)
        torch.set_num_threads(threads)


def _resolve_out(cfg: TrainConfig, ctx: DistContext) -> Path:
    if cfg.run.out:
        out = Path(cfg.run.out)
    elif cfg.run.resume:
        out = run_dir_of(find_checkpoint(cfg.run.resume))
    else:
        out = default_run_dir(cfg.run.name)
    return Path(all_gather_objects(str(out), ctx)[0])  # rank 0's timestamp wins


def _resolved(cfg: TrainConfig, out: Path) -> TrainConfig:
    """``cfg`` with the run directory filled in and data paths made absolute, so the ``config.yaml`` written next
    to every checkpoint works from any working directory (eval, predict, resume)."""
    data = cfg.data
    absolute = {
        name: str(Path(getattr(data, name)).resolve()) for name in ("root", "cache_dir") if getattr(data, name, None)
    }
    return dataclasses.replace(
        cfg, data=dataclasses.replace(data, **absolute), run=dataclasses.replace(cfg.run, out=str(out))
    )


class Trainer:
    """Holds one run's objects and counters; :meth:`fit` runs it.  Not reusable across runs."""

    def __init__(self, cfg: TrainConfig, ctx: DistContext) -> None:
        self.ctx = ctx
        self.t_start = time.perf_counter()
        if not ctx.is_main:
            log.setLevel(logging.WARNING)
        out = _resolve_out(cfg, ctx)
        self.cfg = cfg = _resolved(cfg, out)
        self.run_dir = RunDir(out)
        if not cfg.run.resume and (self.run_dir.last.exists() or self.run_dir.best.exists()):
            raise ValueError(
                f"config key 'run.out': run directory {str(out)!r} already holds a checkpoint; continue it "
                f"with --resume {out}, or choose another --out"
            )
        self.layout = BatchLayout(ctx.world_size, cfg.optim.batch_size, accumulation_steps(cfg.optim, ctx.world_size))
        self.precision = resolve_precision(cfg.run.precision, ctx.device)
        if cfg.optim.mixing and cfg.optim.batch_size % 2:
            raise ValueError(
                f"config key 'optim.batch_size': mixup/cutmix need an even micro-batch, got {cfg.optim.batch_size}"
            )

        seed_everything(cfg.run.seed)
        self.data = build_datasets(cfg.data, seed=cfg.run.seed)
        self.raw_model = self._build_model()
        self.train_loader, self.sampler = create_train_loader(
            self.data.train, cfg.optim.batch_size, cfg.data.num_workers, cfg.run.seed, ctx
        )
        eval_batch = cfg.run.eval_batch_size or 2 * cfg.optim.batch_size
        self.val_loader = create_val_loader(self.data.val, eval_batch, cfg.data.num_workers, ctx)
        self.batches_per_epoch = len(self.train_loader)
        self.updates_per_epoch = math.ceil(self.batches_per_epoch / self.layout.accum)

        optimizer = create_optimizer(self.raw_model, cfg.optim)
        scaler = torch.amp.GradScaler(ctx.device.type) if self.precision.use_scaler else None
        ema = None
        if cfg.optim.ema_decay > 0:
            from timm.utils import ModelEmaV3

            ema = ModelEmaV3(self.raw_model, decay=cfg.optim.ema_decay)
        self.objects = Stateful(model=self.raw_model, optimizer=optimizer, scheduler=None, scaler=scaler, ema=ema)

        config_lrs = [group["lr"] for group in optimizer.param_groups]
        self.resume = ResumePoint(RunProgress(), None, None)
        if cfg.run.resume:
            self.resume = restore(find_checkpoint(cfg.run.resume), self.objects, self.layout, ctx.rank)
        self.progress: RunProgress = self.resume.progress
        for group, lr in zip(optimizer.param_groups, config_lrs):  # the schedule follows the current config
            group["lr"] = group["lr_initial"] = lr
        self.objects.scheduler = create_scheduler(optimizer, cfg.schedule, self.updates_per_epoch)
        if self.objects.scheduler is not None and self.progress.update_step > 0:
            self.objects.scheduler.step_update(num_updates=self.progress.update_step)

        self.parts = self._build_parts()
        self.config_yaml = dump_yaml(cfg)
        # what produced this run (versions, git commit, device, threads), captured before training starts
        self.environment = env_metadata(ctx.device, self.precision.name, cfg.run.seed)
        self.metrics: MetricsLog | None = self._prepare_run_dir() if ctx.is_main else None
        self._log_setup()

    # ------------------------------------------------------------------------------------------------ setup

    def _build_model(self) -> torch.nn.Module:
        cfg = self.cfg.model
        model = create_model(cfg, num_classes=self.data.num_classes, in_chans=self.data.in_chans)
        model.to(self.ctx.device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)
        if cfg.grad_checkpointing:
            if not hasattr(model, "set_grad_checkpointing"):
                raise ValueError(f"config key 'model.grad_checkpointing': {cfg.name} has no set_grad_checkpointing()")
            model.set_grad_checkpointing(True)
        return model

    def _build_parts(self) -> TrainParts:
        cfg, ctx, objects = self.cfg, self.ctx, self.objects
        model: torch.nn.Module = self.raw_model
        ddp = None
        if ctx.distributed:
            device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            # ablation models whose dropped scales leave weights without gradient say so (Atlas.has_unused_parameters)
            find_unused = bool(getattr(self.raw_model, "has_unused_parameters", False))
            model = ddp = torch.nn.parallel.DistributedDataParallel(
                self.raw_model, device_ids=device_ids, find_unused_parameters=find_unused
            )
        if cfg.model.compile:
            model = torch.compile(model)
        return TrainParts(
            model=model,
            raw_model=self.raw_model,
            ddp=ddp,
            optimizer=objects.optimizer,
            scheduler=objects.scheduler,
            scaler=objects.scaler,
            ema=objects.ema,
            mixup=create_mixup(cfg.optim, self.data.num_classes),
            loss_fn=create_train_loss(cfg.optim),
            precision=self.precision,
            channels_last=cfg.model.channels_last,
            clip_grad=cfg.optim.clip_grad,
            accum=self.layout.accum,
            ctx=ctx,
            dummy_chw=(self.data.in_chans, *cfg.data.input_size),
        )

    def _prepare_run_dir(self) -> MetricsLog:
        rd = self.run_dir
        rd.create()
        rd.config.write_text(self.config_yaml)
        if self.cfg.run.resume:
            src_metrics = RunDir(run_dir_of(find_checkpoint(self.cfg.run.resume))).metrics
            if src_metrics.exists() and src_metrics.resolve() != rd.metrics.resolve():
                shutil.copy2(src_metrics, rd.metrics)
        elif rd.metrics.exists():
            rd.metrics.unlink()  # a fresh run into an existing directory starts a fresh log
        metrics = MetricsLog(rd.metrics, rd.tensorboard if self.cfg.run.tensorboard else None)
        metrics.truncate_after(self.progress.update_step)  # drop records written after the resumed checkpoint
        return metrics

    def _log_setup(self) -> None:
        cfg, ctx, d, lay = self.cfg, self.ctx, self.data, self.layout
        log.info("run directory: %s", self.run_dir.path)
        params = count_parameters(self.raw_model) / 1e6
        log.info(
            "model %s: %.2fM parameters; device %s, precision %s, world size %d",
            cfg.model.name,
            params,
            ctx.device,
            self.precision.name,
            ctx.world_size,
        )
        log.info(
            "data %s %s: %d train / %d val images, %d classes",
            cfg.data.task,
            "x".join(str(v) for v in cfg.data.input_size),
            len(d.train),
            len(d.val),
            d.num_classes,
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

    # ------------------------------------------------------------------------------------------------ checkpoints

    def _wall_s(self) -> float:
        return self.progress.totals["wall_s"] + time.perf_counter() - self.t_start

    def _meta(self, val_top1: float | None) -> dict[str, Any]:
        """``meta.json``: what eval/predict need without the training config tree."""
        d, cfg, p = self.data, self.cfg, self.progress
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
            "epoch": p.epoch,
            "batch_in_epoch": p.batch_in_epoch,
            "update_step": p.update_step,
            "val_top1": val_top1,
            "best_val_top1": p.best_top1 if p.best_top1 >= 0 else None,
            "ema": self.objects.ema is not None,
        }

    def _save_last(
        self, rng: dict[str, Any] | None = None, stats: EpochStats | None = None, val_top1: float | None = None
    ) -> None:
        """Write ``checkpoints/last`` at ``self.progress``; collective (mid-epoch: gathers every rank's RNG/stats)."""
        p = self.progress
        per_rank = (
            all_gather_objects((rng, stats.state_dict() if stats else None), self.ctx) if p.batch_in_epoch else []
        )
        progress = dataclasses.replace(p, totals=dict(p.totals, wall_s=self._wall_s()))
        state = build_state(progress, self.layout, self.objects, per_rank)
        if self.ctx.is_main:
            save_checkpoint(self.run_dir.last, self.raw_model, state, self._meta(val_top1), self.config_yaml)

    # ------------------------------------------------------------------------------------------------ epochs

    def _sync_batchnorm(self) -> None:
        """Average BatchNorm running statistics over ranks (each rank's last forward updated its own), so every
        rank evaluates - and rank 0 saves - the same model."""
        if self.ctx.distributed:
            from timm.utils import distribute_bn

            distribute_bn(self.raw_model, self.ctx.world_size, reduce=True)
            if self.objects.ema is not None:
                distribute_bn(self.objects.ema.module, self.ctx.world_size, reduce=True)

    def _evaluate(self, model: torch.nn.Module) -> EvalResult:
        d = self.data
        return evaluate(
            model,
            self.val_loader,
            self.ctx,
            d.num_classes,
            list(d.class_names),
            self.precision,
            self.cfg.model.channels_last,
        )

    def _run_epoch(self, epoch: int, stop: StopRequest) -> dict[str, float] | None:
        """Train epoch ``epoch``; returns its reduced statistics, or ``None`` if stopped mid-epoch by a signal."""
        cfg, ctx, p = self.cfg, self.ctx, self.progress
        start_batch = p.batch_in_epoch if epoch == p.epoch else 0
        if start_batch and self.resume.rng is not None and self.resume.stats is not None:
            restore_rng_state(self.resume.rng, ctx.device)
            stats = self.resume.stats
        else:
            start_batch = 0
            seed_everything(derive_seed(cfg.run.seed, epoch, ctx.rank))
            stats = EpochStats()
        p.epoch, p.batch_in_epoch = epoch, start_batch
        self.sampler.set_epoch(epoch, start_index=start_batch * cfg.optim.batch_size)
        self.train_loader.generator.manual_seed(derive_seed(cfg.run.seed, epoch, ctx.rank, 1))
        bar = EpochProgress(
            use_bars(cfg.run.progress, ctx.is_main),
            (self.batches_per_epoch - start_batch) * cfg.optim.batch_size,
            f"epoch {epoch + 1}/{cfg.schedule.epochs}",
            cfg.run.log_every_steps,
            ctx.is_main,
        )

        def on_update(update_step: int, batches_done: int) -> None:
            p.update_step, p.batch_in_epoch = update_step, batches_done
            every = cfg.run.ckpt_every_steps
            if every and update_step % every == 0 and batches_done < self.batches_per_epoch:
                self._save_last(capture_rng_state(ctx.device), stats)

        try:
            result = train_one_epoch(
                self.parts,
                self.train_loader,
                start_batch=start_batch,
                update_step=p.update_step,
                stats=stats,
                stop=stop,
                progress=bar,
                on_update=on_update,
            )
        finally:
            bar.close()
        p.update_step, p.batch_in_epoch = result.update_step, result.batches_done
        if result.interrupted and result.batches_done < self.batches_per_epoch:
            self._save_last(result.boundary_rng, stats)
            return None
        return reduce_epoch_stats(stats, ctx)

    def _end_epoch(self, epoch: int, train: dict[str, float], t_epoch: float) -> tuple[EvalResult | None, bool]:
        """Evaluate if due, log, and checkpoint after epoch ``epoch``; returns ``(eval result, improved)``."""
        cfg, p = self.cfg, self.progress
        self._sync_batchnorm()
        done = epoch + 1
        p.epoch, p.batch_in_epoch, p.last_train = done, 0, train
        for key in ("images", "train_s", "data_s", "skipped"):
            p.totals[key] += train[key]
        record: dict[str, Any] = {
            "epoch": done,
            "step": p.update_step,
            "lr": self.objects.optimizer.param_groups[0]["lr"],
            **{key: train[key] for key in ("train_loss", "images_per_s", "data_wait_frac")},
            "train_skipped": int(train["skipped"]),
        }
        result, improved = None, False
        if done % cfg.run.eval_every == 0 or done == cfg.schedule.epochs:
            result = self._evaluate(self.raw_model)
            record.update(
                val_loss=result.loss,
                val_top1=result.top1,
                val_top5=result.top5,
                val_count=result.count,
                val_skipped=result.skipped,
            )
            if self.objects.ema is not None:
                ema = self._evaluate(self.objects.ema.module)
                record.update(val_loss_ema=ema.loss, val_top1_ema=ema.top1, val_top5_ema=ema.top5)
            improved = result.top1 > p.best_top1
            if improved:
                p.best_top1, p.best_epoch = result.top1, done
        record["epoch_s"] = time.perf_counter() - t_epoch
        if self.metrics is not None:
            self.metrics.write(record)  # before the checkpoint: a resume truncates records past its step
        log.info("%s", format_epoch(record, cfg.schedule.epochs))
        self._save_last(val_top1=record.get("val_top1"))
        if improved and self.ctx.is_main:
            copy_checkpoint(self.run_dir.last, self.run_dir.best)
        return result, improved

    def fit(self) -> dict[str, Any]:
        """Run the remaining epochs (all of them unless resumed); returns the summary."""
        epochs = self.cfg.schedule.epochs
        final_eval: EvalResult | None = None
        interrupted = False
        with StopRequest() as stop:
            for epoch in range(self.progress.epoch, epochs):
                t_epoch = time.perf_counter()
                train = self._run_epoch(epoch, stop)
                if train is None:
                    interrupted = True
                    break
                result, _ = self._end_epoch(epoch, train, t_epoch)
                final_eval = result or final_eval
                if all_reduce_max_flag(stop.requested, self.ctx) and epoch + 1 < epochs:
                    interrupted = True
                    break
            exit_code = stop.exit_code if interrupted else 0
        if final_eval is None and not interrupted:  # resumed a finished run: evaluate for the summary
            final_eval = self._evaluate(self.raw_model)
        return self._finish(final_eval, interrupted, exit_code)

    def _finish(self, final_eval: EvalResult | None, interrupted: bool, exit_code: int) -> dict[str, Any]:
        ctx = self.ctx
        records = self.metrics.records() if self.metrics is not None else []
        summary = build_summary(
            self.cfg,
            self.progress,
            final_eval,
            records,
            wall_s=self._wall_s(),
            ctx=ctx,
            precision=self.precision.name,
            num_params=count_parameters(self.raw_model),
            interrupted=interrupted,
            exit_code=exit_code,
        )
        summary["environment"] = self.environment
        if ctx.is_main:
            write_json_atomic(self.run_dir.summary, summary)
            if self.cfg.run.plots:
                self.run_dir.write_plots(records, final_eval)
            if self.metrics is not None:
                self.metrics.close()
            if interrupted:
                log.warning(
                    "interrupted: checkpoint written to %s; continue with `atlas-vision train --resume %s`",
                    self.run_dir.last,
                    self.run_dir.path,
                )
            else:
                log.info(
                    "done in %.1fs: val_top1 %.2f%% (best %.2f%% at epoch %s), train_loss %.4f; run directory %s",
                    summary["wall_s"],
                    summary["val_top1"] or 0.0,
                    summary["best_val_top1"] or 0.0,
                    summary["best_epoch"],
                    summary["train_loss"] or float("nan"),
                    self.run_dir.path,
                )
        return summary
