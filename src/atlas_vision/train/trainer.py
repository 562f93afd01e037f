"""``run_training(cfg) -> summary``: the outer training loop (epochs, evaluation, checkpoints, outputs).

The objects it runs are built by :func:`atlas_vision.train.setup.build_run` (run directory, data, model, loaders,
training state, resume); this module only runs the epochs.

Determinism and resume
    At the start of every epoch all random generators are re-seeded from ``(seed, epoch, rank)``, the training order
    is a permutation drawn from ``seed + epoch`` and DataLoader worker seeds come from ``(seed, epoch, rank)``.  So an
    epoch's randomness does not depend on anything before it, and resuming from an epoch-boundary checkpoint
    reproduces an uninterrupted run exactly (on CPU, same thread count).  Mid-epoch checkpoints (SIGINT/SIGTERM,
    ``run.ckpt_every_steps``) also store every rank's live RNG state and partial-epoch statistics and restart the
    sampler at the next micro-batch; they are exact when augmentation is drawn in the main process
    (``data.num_workers: 0``) or per sample (the procedural tasks), and approximately so otherwise.  The learning-rate
    schedule on resume follows the current config (see :func:`atlas_vision.train.state.build_training_state`).

Order of one epoch: train -> average BatchNorm statistics over ranks -> evaluate (every ``run.eval_every`` epochs
and at the end) -> append to ``metrics.jsonl`` -> ``checkpoints/last`` (-> ``checkpoints/best`` if improved).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import torch

from atlas_vision.cpu_allocator import keep_freed_memory
from atlas_vision.data import set_dataset_epoch
from atlas_vision.train.checkpoint import copy_checkpoint, save_checkpoint
from atlas_vision.train.config import TrainConfig
from atlas_vision.train.distributed import (
    all_gather_objects,
    all_reduce_max_flag,
    setup_distributed,
    teardown_distributed,
)
from atlas_vision.train.factory import count_parameters
from atlas_vision.train.loop import evaluate, train_one_epoch
from atlas_vision.train.metrics import EpochStats, EvalResult, reduce_epoch_stats
from atlas_vision.train.progress import EpochProgress, format_done, format_epoch, use_bars
from atlas_vision.train.rng import capture_rng_state, derive_seed, restore_rng_state, seed_everything
from atlas_vision.train.rundir import build_summary, checkpoint_write_errors, write_json_atomic
from atlas_vision.train.setup import RunSetup, build_run
from atlas_vision.train.signals import StopRequest
from atlas_vision.train.state import build_state

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
        if not ctx.is_main:
            log.setLevel(logging.WARNING)
        if ctx.device.type == "cpu" and cfg.run.cpu_allocator == "keep":
            why_not = keep_freed_memory()
            if why_not is None:
                log.info("run.cpu_allocator keep: malloc keeps freed memory in the process")
            else:
                log.info("run.cpu_allocator keep not applied: %s", why_not)
        t_start = time.perf_counter()
        setup = build_run(cfg, ctx)
        failed = True
        try:
            summary = Trainer(setup, t_start).fit()
            failed = False
            return summary
        finally:
            setup.release(failed)
    finally:
        teardown_distributed(ctx)
        torch.set_num_threads(threads)


class Trainer:
    """Runs the epochs of one :class:`RunSetup`; :meth:`fit` returns the summary.  Not reusable across runs."""

    def __init__(self, setup: RunSetup, t_start: float) -> None:
        self.setup = setup
        self.cfg, self.ctx, self.run_dir = setup.cfg, setup.ctx, setup.run_dir
        self.state, self.progress = setup.state, setup.progress
        self.t_start = t_start

    # ------------------------------------------------------------------------------------------------ checkpoints

    def _wall_s(self) -> float:
        return self.progress.totals["wall_s"] + time.perf_counter() - self.t_start

    def _save_last(
        self, rng: dict[str, Any] | None = None, stats: EpochStats | None = None, val_top1: float | None = None
    ) -> None:
        """Write ``checkpoints/last`` at ``self.progress``; collective (mid-epoch: gathers every rank's RNG/stats)."""
        p = self.progress
        per_rank = (
            all_gather_objects((rng, stats.state_dict() if stats else None), self.ctx) if p.batch_in_epoch else []
        )
        progress = dataclasses.replace(p, totals=dict(p.totals, wall_s=self._wall_s()))
        state = build_state(progress, self.setup.layout, self.state, per_rank)
        if self.ctx.is_main:
            meta = self.setup.meta(progress, val_top1)
            last = self.run_dir.last
            with checkpoint_write_errors(last, self.run_dir.path):
                save_checkpoint(last, self.state.model, state, meta, self.setup.config_yaml)

    # ------------------------------------------------------------------------------------------------ epochs

    def _sync_batchnorm(self) -> None:
        """Average BatchNorm running statistics over ranks (each rank's last forward updated its own), so every
        rank evaluates - and rank 0 saves - the same model."""
        if self.ctx.distributed:
            from timm.utils import distribute_bn

            distribute_bn(self.state.model, self.ctx.world_size, reduce=True)
            if self.state.ema is not None:
                distribute_bn(self.state.ema.module, self.ctx.world_size, reduce=True)

    def _evaluate(self, model: torch.nn.Module) -> EvalResult:
        d = self.setup.data
        return evaluate(
            model,
            self.setup.val_loader,
            self.ctx,
            d.num_classes,
            list(d.class_names),
            self.setup.precision,
            self.cfg.model.channels_last,
        )

    def _run_epoch(self, epoch: int, stop: StopRequest) -> dict[str, float] | None:
        """Train epoch ``epoch``; returns its reduced statistics, or ``None`` if stopped mid-epoch by a signal."""
        cfg, ctx, p = self.cfg, self.ctx, self.progress
        start_batch = p.batch_in_epoch if epoch == p.epoch else 0
        resume = self.setup.resume
        if start_batch and resume.rng is not None and resume.stats is not None:
            restore_rng_state(resume.rng, ctx.device)
            stats = resume.stats
        else:
            start_batch = 0
            seed_everything(derive_seed(cfg.run.seed, epoch, ctx.rank))
            stats = EpochStats()
        p.epoch, p.batch_in_epoch = epoch, start_batch
        self.setup.sampler.set_epoch(epoch, start_index=start_batch * cfg.optim.batch_size)
        set_dataset_epoch(self.setup.data.train, epoch)  # procedural tasks: fresh training images every epoch
        self.setup.train_loader.generator.manual_seed(derive_seed(cfg.run.seed, epoch, ctx.rank, 1))
        bar = EpochProgress(
            use_bars(cfg.run.progress, ctx.is_main),
            (self.setup.batches_per_epoch - start_batch) * cfg.optim.batch_size,
            f"epoch {epoch + 1}/{cfg.schedule.epochs}",
            cfg.run.log_every_steps,
            ctx.is_main,
            log_every_s=cfg.run.log_every_s,
            later_images=(cfg.schedule.epochs - epoch - 1) * self.setup.batches_per_epoch * cfg.optim.batch_size,
        )

        def on_update(update_step: int, batches_done: int) -> None:
            p.update_step, p.batch_in_epoch = update_step, batches_done
            every = cfg.run.ckpt_every_steps
            if every and update_step % every == 0 and batches_done < self.setup.batches_per_epoch:
                self._save_last(capture_rng_state(ctx.device), stats)

        try:
            result = train_one_epoch(
                self.setup.parts,
                self.setup.train_loader,
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
        if result.interrupted and result.batches_done < self.setup.batches_per_epoch:
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
            "lr": self.state.optimizer.param_groups[0]["lr"],
            **{
                k: train[k] for k in ("train_loss", "grad_norm_mean", "grad_norm_max", "images_per_s", "data_wait_frac")
            },
            "train_skipped": int(train["skipped"]),
        }
        result, improved = None, False
        if done % cfg.run.eval_every == 0 or done == cfg.schedule.epochs:
            result = self._evaluate(self.state.model)
            record.update(
                val_loss=result.loss,
                val_top1=result.top1,
                val_top5=result.top5,
                val_count=result.count,
                val_skipped=result.skipped,
                topk=result.topk,
            )
            if self.state.ema is not None:
                ema = self._evaluate(self.state.ema.module)
                record.update(val_loss_ema=ema.loss, val_top1_ema=ema.top1, val_top5_ema=ema.top5)
            improved = result.top1 > p.best_top1
            if improved:
                p.best_top1, p.best_epoch = result.top1, done
        record["epoch_s"] = time.perf_counter() - t_epoch
        if self.setup.metrics is not None:
            self.setup.metrics.write(record)  # before the checkpoint: a resume truncates records past its step
        log.info("%s", format_epoch(record, cfg.schedule.epochs))
        self._save_last(val_top1=record.get("val_top1"))
        if improved and self.ctx.is_main:
            with checkpoint_write_errors(self.run_dir.best, self.run_dir.path):
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
            final_eval = self._evaluate(self.state.model)
        return self._finish(final_eval, interrupted, exit_code)

    def _finish(self, final_eval: EvalResult | None, interrupted: bool, exit_code: int) -> dict[str, Any]:
        ctx = self.ctx
        metrics = self.setup.metrics
        records = metrics.records() if metrics is not None else []
        summary = build_summary(
            self.cfg,
            self.progress,
            final_eval,
            records,
            wall_s=self._wall_s(),
            ctx=ctx,
            precision=self.setup.precision.name,
            num_params=count_parameters(self.state.model),
            interrupted=interrupted,
            exit_code=exit_code,
        )
        summary["environment"] = self.setup.environment
        if ctx.is_main:
            write_json_atomic(self.run_dir.summary, summary)
            if self.cfg.run.plots:
                self.run_dir.write_plots(records, final_eval)
            if interrupted:
                log.warning(
                    "interrupted: checkpoint written to %s; continue with `atlas-vision train --resume %s`",
                    self.run_dir.last,
                    self.run_dir.path,
                )
            else:
                log.info("%s", format_done(summary, self.run_dir.path))
        return summary
