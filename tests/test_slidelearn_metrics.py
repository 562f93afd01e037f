"""Slide metrics against simple references (pairwise AUC, per-class counting) on random and hand-made cases."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from atlas_vision.slidelearn.metrics import format_slide_metrics, roc_auc, slide_metrics


def pairwise_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Reference: the fraction of (positive, negative) pairs ranked correctly, ties one half."""
    pos, neg = scores[positive], scores[~positive]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_the_pairwise_definition_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    scores = rng.integers(0, 6, size=n) / 5.0  # many ties
    positive = rng.random(n) < 0.4
    positive[0], positive[1] = True, False
    assert roc_auc(scores, positive) == pytest.approx(pairwise_auc(scores, positive), abs=1e-12)


def test_roc_auc_extremes_and_undefined() -> None:
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1], bool)) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1], bool)) == 0.0
    assert roc_auc(np.array([0.5, 0.5]), np.array([0, 1], bool)) == 0.5
    assert roc_auc(np.array([0.1, 0.9]), np.array([1, 1], bool)) is None


def test_binary_metrics_by_hand() -> None:
    # labels 0,0,0,1 ; predictions 0,0,1,1  -> accuracy 3/4, recalls 2/3 and 1 -> balanced 5/6
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.3, 0.7]])
    labels = np.array([0, 0, 0, 1])
    m = slide_metrics(probs, labels, ["normal", "tumor"])
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["roc_auc"] == pytest.approx(1.0)  # class-1 scores of the positive beat all negatives
    assert m["confusion"] == [[2, 1], [0, 1]]
    assert m["per_class"]["normal"] == {
        "count": 3,
        "recall": pytest.approx(2 / 3),
        "precision": 1.0,
        "roc_auc_ovr": 1.0,
    }
    assert m["per_class"]["tumor"]["precision"] == pytest.approx(0.5)
    text = format_slide_metrics(m)
    assert "accuracy  75.0%" in text and "balanced accuracy  83.3%" in text and "ROC-AUC 1.000" in text


def test_multiclass_one_vs_rest_is_the_macro_mean() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 4))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 4, size=40)
    m = slide_metrics(probs, labels, list("abcd"))
    expected = np.mean([pairwise_auc(probs[:, c], labels == c) for c in range(4)])
    assert m["roc_auc"] == pytest.approx(expected)
    pred = probs.argmax(1)
    recalls = [np.mean(pred[labels == c] == c) for c in range(4)]
    assert m["balanced_accuracy"] == pytest.approx(np.mean(recalls))
    assert m["accuracy"] == pytest.approx(np.mean(pred == labels))
    assert sum(map(sum, m["confusion"])) == 40


def test_class_without_examples_is_left_out_of_the_means() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1]])
    m = slide_metrics(probs, np.array([0, 1, 1]), ["a", "b", "c"])
    assert m["per_class"]["c"]["recall"] is None and m["per_class"]["c"]["roc_auc_ovr"] is None
    assert m["balanced_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    assert "n/a" in format_slide_metrics(m)


def test_bad_shapes_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"probs must be \[N, K\]"):
        slide_metrics(np.zeros(3), np.zeros(3, int), ["a"])
    with pytest.raises(ValueError, match=r"labels must be \[N\] = \[2\]"):
        slide_metrics(np.zeros((2, 2)), np.zeros(3, int), ["a", "b"])
    with pytest.raises(ValueError, match=r"labels must be in \[0, 1\]"):
        slide_metrics(np.zeros((2, 2)), np.array([0, 2]), ["a", "b"])
    with pytest.raises(ValueError, match="class_names has 3 names for 2 classes"):
        slide_metrics(np.zeros((2, 2)), np.array([0, 1]), ["a", "b", "c"])
