"""Progress display: a tqdm bar (images/s, ETA) on a terminal, plain log lines otherwise (CI, files, non-main ranks)."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

log = logging.getLogger("atlas_vision.train")


def use_bars(mode: str, is_main: bool) -> bool:
    """``always``/``never``; ``auto`` = stderr is a TTY and the ``CI`` environment variable is unset."""
    if not is_main or mode == "never":
        return False
    if mode == "always":
        return True
    return sys.stderr.isatty() and not os.environ.get("CI")


class EpochProgress:
    """Per-epoch progress in images; a tqdm bar when enabled, periodic log lines every ``log_every`` updates."""

    def __init__(self, enabled: bool, total_images: int, desc: str, log_every: int, is_main: bool) -> None:
        self._bar: Any = None
        self._desc, self._log_every, self._is_main = desc, log_every, is_main
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total_images,
                desc=desc,
                unit="img",
                unit_scale=True,
                dynamic_ncols=True,
                leave=False,
                file=sys.stderr,
            )

    def update(self, images: int, update_step: int, loss: float, lr: float, images_per_s: float) -> None:
        """Advance by ``images``; ``update_step`` is the optimizer update count after this call."""
        if self._bar is not None:
            self._bar.update(images)
            self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", refresh=False)
        elif self._is_main and self._log_every and update_step % self._log_every == 0:
            log.info("%s step %d  loss %.4f  lr %.2e  %.1f img/s", self._desc, update_step, loss, lr, images_per_s)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def format_epoch(record: dict[str, Any], epochs: int) -> str:
    """One log line for a ``metrics.jsonl`` record."""
    r = record
    val = (
        f"  val_loss {r['val_loss']:.4f}  val_top1 {r['val_top1']:.2f}%  val_top5 {r['val_top5']:.2f}%"
        if "val_top1" in r
        else ""
    )
    return (
        f"epoch {r['epoch']}/{epochs} step {r['step']}  train_loss {r['train_loss']:.4f}{val}  lr {r['lr']:.2e}  "
        f"{r['images_per_s']:.1f} img/s  data-wait {100 * r['data_wait_frac']:.0f}%  ({r['epoch_s']:.1f}s)"
    )
