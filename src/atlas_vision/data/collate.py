"""Batch collation that tolerates unreadable images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import default_collate


def collate_skip_none(
    batch: Sequence[tuple[torch.Tensor, int] | None],
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Collate ``(image, label)`` samples, dropping the ``None`` ones (unreadable images of a non-strict folder).

    Use it as ``DataLoader(..., collate_fn=collate_skip_none)``; it is a plain module-level function, so it works
    with worker processes.

    Args:
        batch: samples as returned by the data sets: ``(image [C, H, W], label)`` or ``None``.

    Returns:
        ``(images [B', C, H, W], labels [B'] int64, n_skipped)`` with ``B' = len(batch) - n_skipped``.  If every
        sample was ``None``, ``images`` and ``labels`` are empty tensors of shape ``[0]``: skip such a batch.
    """
    kept = [sample for sample in batch if sample is not None]
    n_skipped = len(batch) - len(kept)
    if not kept:
        return torch.empty(0), torch.empty(0, dtype=torch.long), n_skipped
    images, labels = default_collate(kept)
    return images, labels.long(), n_skipped
