"""The slide heads through the ordinary pipeline: ``atlas-vision train --data.task slide_features`` then
``atlas-vision eval``, which prints and saves the slide metrics next to the confusion matrix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from slidelearn_support import write_grid

from atlas_vision.cli import main as cli
from atlas_vision.slidelearn.features_source import features_path

FEATURES = 4


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_slides(root: Path, n: int = 24) -> None:
    """A learnable toy set: label = whether channel 0 is raised on the slide's tissue cells."""
    rng = np.random.default_rng(0)
    rows = ["slide_id,label,split"]
    for i in range(n):
        label = i % 2
        h, w = int(rng.integers(4, 9)), int(rng.integers(4, 9))
        features = rng.normal(size=(FEATURES, h, w))
        features[0] += 2.0 if label else -2.0
        write_grid(features_path(root, f"s{i:02d}"), [(features, rng.random((h, w)) < 0.8)])
        rows.append(f"s{i:02d},{'tumor' if label else 'normal'},{'val' if i % 4 >= 2 else 'train'}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("model", ["slide_meanpool", "slide_abmil", "slide_atlas"])
def test_train_then_eval_prints_and_saves_slide_metrics(
    model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "slides"
    make_slides(root)
    out = tmp_path / "run"
    small = ["--model.kwargs.embed_dim", "16", "--model.kwargs.num_heads", "2"] if model == "slide_atlas" else []
    argv = ["train", "--data.task", "slide_features", "--data.root", str(root), "--data.img_size", "8", "8"]
    argv += ["--data.num_workers", "0", "--model.name", model, *small, "--optim.batch_size", "4", "--optim.lr", "1e-2"]
    argv += ["--schedule.warmup_epochs", "0", "--epochs", "3", "--out", str(out), "--run.progress", "never"]
    assert cli(argv) == 0
    capsys.readouterr()
    assert cli(["eval", "--checkpoint", str(out), "--batch-size", "5"]) == 0
    printed = capsys.readouterr().out
    assert "balanced accuracy" in printed and "ROC-AUC" in printed and "AUC(ovr)" in printed
    report = json.loads((out / "eval" / "eval.json").read_text())
    metrics = report["slide_metrics"]
    assert metrics["count"] == 12 and metrics["class_names"] == ["normal", "tumor"]
    assert sum(map(sum, metrics["confusion"])) == 12
    assert metrics["confusion"] == report["confusion"]  # same predictions as the top-1 evaluation
    assert abs(100 * metrics["accuracy"] - report["top1"]) < 1e-6
    assert (out / "eval" / "confusion_matrix.png").is_file()


def test_eval_error_names_the_missing_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "slides"
    make_slides(root, n=8)
    (root / "labels.csv").write_text((root / "labels.csv").read_text() + "ghost,tumor,val\n")
    argv = ["train", "--data.task", "slide_features", "--data.root", str(root), "--data.img_size", "8", "8"]
    argv += ["--model.name", "slide_meanpool", "--epochs", "1", "--out", str(tmp_path / "run")]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert "slide 'ghost'" in err and "line 10" in err and "does not exist" in err


def test_relative_data_paths_are_absolute_in_the_run_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--data.root`` and ``--data.labels_csv`` given relative to the working directory are stored absolute in the
    run's ``config.yaml``, so ``eval`` works from another directory."""
    make_slides(tmp_path / "slides")
    (tmp_path / "slides" / "labels.csv").rename(tmp_path / "my_labels.csv")
    monkeypatch.chdir(tmp_path)
    argv = ["train", "--data.task", "slide_features", "--data.root", "slides", "--data.labels_csv", "my_labels.csv"]
    argv += ["--data.img_size", "8", "8", "--data.num_workers", "0", "--model.name", "slide_meanpool"]
    argv += ["--optim.batch_size", "4", "--epochs", "1", "--out", "run", "--run.progress", "never"]
    assert cli(argv) == 0
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert f"labels_csv: {tmp_path / 'my_labels.csv'}" in config and f"root: {tmp_path / 'slides'}" in config
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert cli(["eval", "--checkpoint", str(tmp_path / "run")]) == 0
    assert "balanced accuracy" in capsys.readouterr().out
