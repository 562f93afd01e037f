"""Run a slide head over a loader and compute :func:`~atlas_vision.slidelearn.metrics.slide_metrics`.

Used by ``atlas-vision eval`` (for ``data.task: slide_features``) and by the slide demo. Under ``torchrun`` every
rank scores its shard and the probabilities are gathered, so the metrics cover every slide exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from atlas_vision.slidelearn.metrics import slide_metrics


@torch.no_grad()
def predict_probabilities(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax probabilities ``[N, K]`` and labels ``[N]`` of this process's slides (loader of
    ``(grids, labels, skipped)`` batches, as built by the training pipeline's loaders)."""
    was_training = model.training
    model.eval()
    probs, labels = [], []
    for batch in loader:
        grids, targets = batch[0], batch[1]
        if targets.numel() == 0:
            continue
        with autocast():
            logits = model(grids.to(device))
        probs.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        labels.append(targets.numpy())
    model.train(was_training)
    if not probs:
        return np.zeros((0, 0)), np.zeros(0, dtype=np.int64)
    return np.concatenate(probs), np.concatenate(labels)


def evaluate_slides(
    model: nn.Module, loader: DataLoader, ctx: Any, class_names: list[str], precision: Any = None
) -> dict[str, Any]:
    """Slide metrics over every rank's slides.

    Args:
        ctx: the training pipeline's ``DistContext`` (``device``; gathers when distributed).
        precision: its ``Precision`` (autocast), or ``None`` for fp32.
    """
    from atlas_vision.train.distributed import all_gather_objects

    probs, labels = predict_probabilities(model, loader, ctx.device, precision.autocast if precision else nullcontext)
    parts = all_gather_objects((probs, labels), ctx)
    kept = [(p, y) for p, y in parts if len(y)]
    if not kept:
        raise ValueError("no slides to evaluate (the validation set is empty)")
    return slide_metrics(np.concatenate([p for p, _ in kept]), np.concatenate([y for _, y in kept]), class_names)
