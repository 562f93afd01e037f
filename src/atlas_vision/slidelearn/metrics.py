"""Slide-level classification metrics: accuracy, balanced accuracy, ROC-AUC (binary and one-vs-rest), per class.

Pure functions of predicted class probabilities ``probs [N, K]`` and integer labels ``labels [N]`` (NumPy), so
they serve ``atlas-vision eval``, the slide demo and users' own loops alike. Accuracies are fractions in [0, 1].

ROC-AUC is the Mann-Whitney statistic: the probability that a random positive scores above a random negative,
ties counting one half (computed from average ranks, ``O(N log N)``). It is undefined (``None``) when a class has
no positive or no negative example.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _check(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"probs must be [N, K] with K >= 2 classes, got shape {probs.shape}")
    if labels.shape != (probs.shape[0],):
        raise ValueError(f"labels must be [N] = [{probs.shape[0]}], got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"labels must be in [0, {probs.shape[1] - 1}], got min {labels.min()} max {labels.max()}")
    return probs, labels.astype(np.int64)


def _rankdata(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]  # first element of each run of equal values
    run_id = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(values)] - 1
    average = (first + last) / 2.0 + 1.0  # average 1-based rank of each run
    ranks = np.empty(len(values))
    ranks[order] = average[run_id]
    return ranks


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
    """ROC-AUC of ``scores [N]`` for the boolean ``positive [N]``; ``None`` if either class is absent."""
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``[K, K]`` counts, rows = true class, columns = predicted class."""
    return np.bincount(labels * num_classes + pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def slide_metrics(probs: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """All slide metrics of one evaluation.

    Args:
        probs: ``[N, K]`` class probabilities (any monotone score per class works for the AUCs).
        labels: ``[N]`` true classes in ``[0, K)``.
        class_names: ``K`` names.

    Returns:
        ``count``, ``accuracy``, ``balanced_accuracy`` (mean recall over the classes present), ``roc_auc``
        (binary: of class 1's score; more classes: macro mean of the one-vs-rest AUCs that are defined),
        ``per_class`` (``{name: {count, recall, precision, roc_auc_ovr}}``), ``confusion`` (``[K][K]`` lists),
        ``class_names``. Undefined values are ``None``.
    """
    probs, labels = _check(probs, labels)
    k = probs.shape[1]
    if len(class_names) != k:
        raise ValueError(f"class_names has {len(class_names)} names for {k} classes")
    pred = probs.argmax(axis=1)
    confusion = confusion_matrix(pred, labels, k)
    counts, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    per_class: dict[str, dict[str, Any]] = {}
    recalls, aucs = [], []
    for c, name in enumerate(class_names):
        recall = float(confusion[c, c] / counts[c]) if counts[c] else None
        auc = roc_auc(probs[:, c], labels == c)
        per_class[name] = {
            "count": int(counts[c]),
            "recall": recall,
            "precision": float(confusion[c, c] / predicted[c]) if predicted[c] else None,
            "roc_auc_ovr": auc,
        }
        if recall is not None:
            recalls.append(recall)
        if auc is not None:
            aucs.append(auc)
    if k == 2:
        auc_all = per_class[class_names[1]]["roc_auc_ovr"]
    else:
        auc_all = float(np.mean(aucs)) if aucs else None
    n = labels.size
    return {
        "count": int(n),
        "accuracy": float((pred == labels).mean()) if n else None,
        "balanced_accuracy": float(np.mean(recalls)) if recalls else None,
        "roc_auc": auc_all,
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "class_names": list(class_names),
    }


def format_slide_metrics(metrics: dict[str, Any]) -> str:
    """Human-readable lines for a :func:`slide_metrics` result (as printed by ``atlas-vision eval``)."""

    def pct(value: float | None) -> str:
        return "  n/a" if value is None else f"{100 * value:5.1f}"

    def auc(value: float | None) -> str:
        return " n/a" if value is None else f"{value:.3f}"

    lines = [
        (
            f"slides {metrics['count']}: accuracy {pct(metrics['accuracy'])}%  balanced accuracy "
            f"{pct(metrics['balanced_accuracy'])}%  ROC-AUC {auc(metrics['roc_auc'])}"
        )
    ]
    width = max(len(name) for name in metrics["class_names"])
    for name, row in metrics["per_class"].items():
        lines.append(
            f"  {name:<{width}}  n={row['count']:<5d} recall {pct(row['recall'])}%  precision "
            f"{pct(row['precision'])}%  AUC(ovr) {auc(row['roc_auc_ovr'])}"
        )
    return "\n".join(lines)
