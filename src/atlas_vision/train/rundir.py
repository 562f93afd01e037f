"""The run directory: its layout, its default name, the lock that keeps it to one run, the files written at the
start and at the end of a run.

::

    RUN/
      .lock                held (``flock``) by the training process that owns the directory
      config.yaml          fully resolved TrainConfig
      metrics.jsonl        one JSON object per evaluation
      summary.json         final numbers (accuracies in %)
      loss.png accuracy.png grad_norm.png confusion_matrix.png (<= 20 classes)
      checkpoints/last/    latest checkpoint (every epoch, every run.ckpt_every_steps, on SIGINT/SIGTERM)
      checkpoints/best/    checkpoint with the best val top-1
      tensorboard/         (run.tensorboard)

One run per directory: the training process holds an exclusive ``flock`` on ``RUN/.lock`` from before it writes
anything until it exits (the kernel releases it when the process dies, even by SIGKILL, so ``--resume`` after a
crash finds it free).  A second run into the same directory - concurrent ``--out``, or two default names from the
same second - is refused (default names get a ``-2``, ``-3``, ... suffix instead).  A run that fails before its
first checkpoint removes the directory it created, so no empty run directory is left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atlas_vision.train.checkpoint import CHECKPOINT_DIR
from atlas_vision.train.metrics import EvalResult, MetricsLog
from atlas_vision.train.plots import MAX_LABELLED_CLASSES, plot_confusion, plot_curves

if TYPE_CHECKING:
    from atlas_vision.train.config import TrainConfig
    from atlas_vision.train.distributed import DistContext
    from atlas_vision.train.state import RunProgress


LOCK_FILE = ".lock"


def default_run_dir(name: str) -> Path:
    """``runs/<name>``, or a new ``runs/<YYYYmmdd-HHMMSS>`` directory (``-2``, ``-3``, ... appended if a run of the
    same second already made it; created here, atomically, so two processes never get the same one)."""
    if name:
        return Path("runs") / name
    base = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise ValueError(f"config key 'run.out': could not find a free run directory next to {str(base)!r}")


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

    @property
    def lock(self) -> Path:
        return self.path / LOCK_FILE

    def has_checkpoint(self) -> bool:
        """Whether any checkpoint (complete or being written) exists in ``checkpoints/``."""
        return self.checkpoints.is_dir() and any(self.checkpoints.iterdir())

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
        "topk": val("topk", "topk"),
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


@contextlib.contextmanager
def checkpoint_write_errors(directory: Path, run_path: Path) -> Iterator[None]:
    """Turn an ``OSError`` while writing checkpoint ``directory`` (full disk, ...) into one clear ``OSError`` and
    remove the partial ``.<name>.tmp`` directory, so a failed write leaves only the previous, complete checkpoint.

    (``.<name>.tmp`` is the temporary name of :func:`atlas_vision.train.checkpoint.write_checkpoint_dir`.)"""
    try:
        yield
    except OSError as err:
        shutil.rmtree(directory.with_name(f".{directory.name}.tmp"), ignore_errors=True)
        raise OSError(
            err.errno,
            f"cannot write checkpoint {str(directory)!r}: {err.strerror or err}; the previous checkpoint is kept - "
            f"free some space and continue with --resume {run_path}",
        ) from err


def _out_error(path: Path, err: OSError) -> ValueError:
    return ValueError(
        f"config key 'run.out': cannot write the run directory {str(path)!r}: {err.strerror or err}; "
        f"choose another --out (a writable directory with free space)"
    )


class RunDirClaim:
    """This process's exclusive hold on a run directory (``flock`` on ``RUN/.lock``); :meth:`release` gives it up.

    Raises (from the constructor):
        ValueError: ``path`` is a file, cannot be created or written (read-only file system, full disk, no
            permission), or is held by another training process (naming its pid).
    """

    def __init__(self, run_dir: RunDir) -> None:
        path = run_dir.path
        self.run_dir = run_dir
        if path.exists() and not path.is_dir():
            raise ValueError(f"config key 'run.out': {str(path)!r} exists and is not a directory; choose another --out")
        # a directory default_run_dir just made, or none at all, is ours to remove if the run fails early
        self.created = not path.exists() or not any(path.iterdir())
        try:
            run_dir.checkpoints.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(run_dir.lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise _out_error(path, err) from None
        try:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no flock (Windows): one run per directory is not enforced
            pass
        except OSError:
            owner = run_dir.lock.read_text().strip() or "unknown"
            os.close(self._fd)
            self._fd = None
            raise ValueError(
                f"config key 'run.out': run directory {str(path)!r} is in use by another training process "
                f"(pid {owner}); wait for it to finish, or choose another --out"
            ) from None
        try:
            os.ftruncate(self._fd, 0)
            os.write(self._fd, f"{os.getpid()}\n".encode())
        except OSError as err:
            self.release(failed=True)
            raise _out_error(path, err) from None

    def release(self, failed: bool) -> None:
        """Unlock; after a failure before the first checkpoint, also remove the directory if this run made it."""
        if self._fd is None:
            return
        if failed and self.created and not self.run_dir.has_checkpoint():
            _remove_run_files(self.run_dir)
        os.close(self._fd)
        self._fd = None


def _remove_run_files(run_dir: RunDir) -> None:
    """Remove what a run writes (and the directory, if nothing else is in it)."""
    rd = run_dir
    for path in (rd.config, rd.metrics, rd.summary, rd.lock):
        path.unlink(missing_ok=True)
    for directory in (rd.checkpoints, rd.tensorboard):
        shutil.rmtree(directory, ignore_errors=True)
    for png in rd.path.glob("*.png"):
        png.unlink(missing_ok=True)
    try:
        rd.path.rmdir()
    except OSError:  # something else lives there: leave it
        pass


def start_run_files(
    run_dir: RunDir, config_yaml: str, resumed_from: Path | None, update_step: int, tensorboard: bool
) -> MetricsLog:
    """Write ``config.yaml`` and open ``metrics.jsonl``: a resumed run continues (a copy of) the resumed run's log
    truncated to ``update_step``; a fresh run starts an empty one."""
    rd = run_dir
    try:
        rd.config.write_text(config_yaml)
        if resumed_from is not None:
            src_metrics = RunDir(resumed_from).metrics
            if src_metrics.exists() and src_metrics.resolve() != rd.metrics.resolve():
                shutil.copy2(src_metrics, rd.metrics)
        elif rd.metrics.exists():
            rd.metrics.unlink()  # left by an earlier run that died before its first checkpoint
        metrics = MetricsLog(rd.metrics, rd.tensorboard if tensorboard else None)
        metrics.truncate_after(update_step)  # drop records written after the resumed checkpoint
    except OSError as err:
        raise _out_error(rd.path, err) from None
    return metrics
