"""Progress display: a tqdm bar (images/s, ETA) on a terminal, plain log lines otherwise (CI, files, non-main ranks)."""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

log = logging.getLogger("atlas_vision.train")


def use_bars(mode: str, is_main: bool) -> bool:
    """``always``/``never``; ``auto`` = stderr is a TTY and the ``CI`` environment variable is unset."""
    if not is_main or mode == "never":
        return False
    if mode == "always":
        return True
    return sys.stderr.isatty() and not os.environ.get("CI")


def _duration(seconds: float) -> str:
    h, rest = divmod(round(seconds), 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{rest // 60}m{rest % 60:02d}s"


class EpochProgress:
    """Per-epoch progress in images: a tqdm bar when enabled; otherwise (main process only) a log line every
    ``log_every`` updates and at least every ``log_every_s`` seconds, with the update step, images done, images/s
    and the ETA of the remaining training (``later_images`` = images of the epochs after this one)."""

    def __init__(
        self,
        enabled: bool,
        total_images: int,
        desc: str,
        log_every: int,
        is_main: bool,
        log_every_s: float = 0.0,
        later_images: int = 0,
    ) -> None:
        self._bar: Any = None
        self._desc, self._log_every, self._is_main = desc, log_every, is_main
        self._log_every_s, self._later = log_every_s, later_images
        self._total, self._done = total_images, 0
        self._last_line = time.monotonic()
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total_images,
                desc=desc,
                unit="img",
                dynamic_ncols=True,
                leave=False,
                file=sys.stderr,
            )

    def update(self, images: int, update_step: int, loss: float, lr: float, images_per_s: float) -> None:
        """Advance by ``images``; ``update_step`` is the optimizer update count after this call."""
        self._done += images
        if self._bar is not None:
            self._bar.update(images)
            self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)
            return
        if not self._is_main:
            return
        now = time.monotonic()
        due_steps = self._log_every and update_step % self._log_every == 0
        due_time = self._log_every_s > 0 and now - self._last_line >= self._log_every_s
        if due_steps or due_time:
            self._last_line = now
            left = max(self._total - self._done, 0) + self._later
            eta = _duration(left / images_per_s) if images_per_s > 0 else "?"
            log.info(
                "%s step %d  %d/%d img  loss %.4f  lr %.2e  %.1f img/s  ETA %s",
                self._desc,
                update_step,
                self._done,
                self._total,
                loss,
                lr,
                images_per_s,
                eta,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def top5_label(topk: int) -> str:
    """``val_top5`` is top-min(5, classes): say which k it is when there are fewer than 5 classes."""
    return "" if topk >= 5 else f" (top-{topk}: {topk} classes)"


def format_epoch(record: dict[str, Any], epochs: int) -> str:
    """One log line for a ``metrics.jsonl`` record."""
    r = record
    val = (
        f"  val_loss {r['val_loss']:.4f}  val_top1 {r['val_top1']:.2f}%  val_top5 {r['val_top5']:.2f}%"
        + top5_label(r.get("topk", 5))
        if "val_top1" in r
        else ""
    )
    return (
        f"epoch {r['epoch']}/{epochs} step {r['step']}  train_loss {r['train_loss']:.4f}{val}  lr {r['lr']:.2e}  "
        f"grad_norm {r['grad_norm_mean']:.3g} (max {r['grad_norm_max']:.3g})  "
        f"{r['images_per_s']:.1f} img/s  data-wait {100 * r['data_wait_frac']:.0f}%  ({r['epoch_s']:.1f}s)"
    )


def format_done(summary: dict[str, Any], run_dir: Any) -> str:
    """The last log line of a finished run."""
    s = summary

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}%"

    loss = "n/a" if s["train_loss"] is None else f"{s['train_loss']:.4f}"
    return (
        f"done in {s['wall_s']:.1f}s: val_top1 {pct(s['val_top1'])} (best {pct(s['best_val_top1'])} at epoch "
        f"{s['best_epoch']}), train_loss {loss}; run directory {run_dir}"
    )
