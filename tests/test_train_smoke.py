"""Short in-process training runs: every built-in task, the run-directory contents, optional features, corrupt
images."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from test_train_support import tiny_config

from atlas_vision.train import run_training
from atlas_vision.train.checkpoint import WEIGHTS_FILE, load_state, read_meta

TASKS = {
    "fake": {"data": {"task": "fake"}},
    "longrange": {"data": {"task": "longrange", "img_size": [64, 64]}},
    "pathfinder": {"data": {"task": "pathfinder", "img_size": [32, 32]}},
}


def _check_run_dir(out: Path, summary: dict, steps: int) -> None:
    assert summary["steps"] == steps and not summary["interrupted"] and summary["exit_code"] == 0
    assert 0.0 <= summary["val_top1"] <= 100.0 and summary["best_val_top1"] >= summary["val_top1"] - 1e-9
    assert math.isfinite(summary["train_loss"]) and summary["world_size"] == 1 and summary["device"] == "cpu"
    for key in ("epochs", "wall_s", "images_per_s", "data_wait_frac", "val_top5", "skipped_images"):
        assert key in summary, key
    assert json.loads((out / "summary.json").read_text()) == summary
    assert (out / "config.yaml").is_file()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records, "metrics.jsonl is empty"
    for key in (
        "epoch",
        "step",
        "train_loss",
        "grad_norm_mean",
        "grad_norm_max",
        "val_loss",
        "val_top1",
        "val_top5",
        "images_per_s",
        "lr",
        "data_wait_frac",
        "train_skipped",
        "val_count",
    ):
        assert key in records[-1], key
    for name in ("last", "best"):
        ckpt = out / "checkpoints" / name
        assert (ckpt / "model.safetensors").is_file() and (ckpt / "state.pt").is_file(), name
        state = load_state(ckpt)
        assert {"optimizer", "scheduler", "scaler", "ema", "rng", "epoch", "batch_in_epoch"} <= set(state)
    assert not list((out / "checkpoints").glob(".*")), "temporary checkpoint directories left behind"


@pytest.mark.parametrize("task", sorted(TASKS))
def test_two_steps_per_builtin_task(task: str, tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path / "run", **TASKS[task])
    summary = run_training(cfg)  # 16 train images / batch 8 = 2 optimizer updates
    _check_run_dir(tmp_path / "run", summary, steps=2)
    assert summary["val_count"] == cfg.data.val_samples
    assert read_meta(tmp_path / "run" / "checkpoints" / "last")["task"] == task


def test_plots_mixup_ema_accumulation_clipping(tmp_path: Path) -> None:
    """Optional features together: mixup+cutmix, EMA, clipping, accumulation (3 micro-batches -> 2 updates: the
    short last group is not carried over), 2 epochs, plots."""
    out = tmp_path / "run"
    cfg = tiny_config(
        out,
        data={"train_samples": 24},
        run={"plots": True},
        optim={"batch_size": 4, "global_batch": 8, "mixup": 0.8, "cutmix": 1.0, "ema_decay": 0.9, "clip_grad": 1.0},
        schedule={"epochs": 2, "warmup_epochs": 0.5},
    )
    summary = run_training(cfg)
    # 24 images / micro-batch 4 = 6 micro-batches = 3 updates of 2 per epoch
    _check_run_dir(out, summary, steps=6)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and "val_top1_ema" in records[-1]
    assert load_state(out / "checkpoints" / "last")["ema"] is not None
    for png in ("loss.png", "accuracy.png", "grad_norm.png", "confusion_matrix.png"):
        assert (out / png).stat().st_size > 1000, png


def _one_sgd_update(out: Path, lr: float, clip: float) -> tuple[dict[str, torch.Tensor], dict]:
    """Train the tiny model for exactly one plain SGD update (no momentum, no weight decay, constant lr) on one batch
    of 8; the same initial weights and batch for every call.  Returns the trained weights (BatchNorm running
    statistics left out) and the one ``metrics.jsonl`` record."""
    cfg = tiny_config(
        out,
        data={"train_samples": 8},  # one batch of 8 = one update
        optim={"opt": "momentum", "momentum": 0.0, "lr": lr, "weight_decay": 0.0, "clip_grad": clip},
        schedule={"warmup_epochs": 0, "min_lr": lr},  # a constant lr
    )
    assert run_training(cfg)["steps"] == 1
    trained = load_file(str(out / "checkpoints" / "last" / WEIGHTS_FILE))
    weights = {k: v.double() for k, v in trained.items() if v.is_floating_point() and "running_" not in k}
    (record,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return weights, record


def _distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """L2 norm of the difference of two weight sets, as one vector."""
    return torch.cat([(b[k] - a[k]).flatten() for k in a]).norm().item()


def test_clip_grad_bounds_the_update(tmp_path: Path) -> None:
    """optim.clip_grad really clips (the default recipe relies on it: docs/benchmarks.md section 6).  One SGD update
    from the same weights and batch with clip c and with clip 2c: when both clip, the two updates are lr*c and lr*2c
    along the same direction, so the two trained models differ by exactly lr*c in L2 norm.  Without clipping they
    would be identical."""
    lr, clip = 1.0, 1e-2
    (w1, _), (w2, _) = (_one_sgd_update(tmp_path / f"run{i}", lr, c) for i, c in enumerate((clip, 2 * clip)))
    assert _distance(w1, w2) == pytest.approx(lr * clip, rel=0.02)


def test_logged_grad_norm_is_the_norm_of_the_update(tmp_path: Path) -> None:
    """metrics.jsonl's grad_norm is the gradient's L2 norm before clipping.  One SGD update without clipping with
    lr 1 and with lr 2 from the same weights and batch: the two trained models differ by exactly the gradient, so
    their distance is the norm both runs must log.  A third run clipped far below that norm must log the same
    (unclipped) value."""
    runs = [
        _one_sgd_update(tmp_path / f"run{i}", lr, c) for i, (lr, c) in enumerate(((1.0, 0.0), (2.0, 0.0), (1.0, 1e-3)))
    ]
    for _, record in runs:
        assert record["grad_norm_mean"] == record["grad_norm_max"]  # one update
    logged = [record["grad_norm_max"] for _, record in runs]
    gradient_norm = _distance(runs[0][0], runs[1][0])
    assert gradient_norm > 10 * 1e-3  # so the third run really clipped
    assert logged[0] == pytest.approx(gradient_norm, rel=1e-4)
    assert logged[1] == pytest.approx(logged[0], rel=1e-6) and logged[2] == pytest.approx(logged[0], rel=1e-6)


def test_accumulation_short_last_group(tmp_path: Path) -> None:
    """5 micro-batches with accumulation 2 -> updates of 2, 2, 1 micro-batches: 3 updates per epoch."""
    cfg = tiny_config(tmp_path / "run", data={"train_samples": 20}, optim={"batch_size": 4, "global_batch": 8})
    assert run_training(cfg)["steps"] == 3


def _png(path: Path, rng: np.random.Generator, size: tuple[int, int] = (40, 36)) -> None:
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)


def test_folder_task_counts_corrupt_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "tree"
    for split, n in (("train", 8), ("val", 3)):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                _png(root / split / cls / f"{i}.png", rng)
    (root / "train" / "cat" / "broken.png").write_bytes(b"not a png")
    (root / "val" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    cfg = tiny_config(
        tmp_path / "run", data={"task": "folder", "root": str(root), "strict": False}, optim={"batch_size": 5}
    )
    summary = run_training(cfg)
    # 17 train files (1 broken) -> 3 micro-batches of 5 images (2 left over, drop_last); 7 val files (1 broken)
    assert summary["val_count"] == 6
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["val_skipped"] == 1
    assert summary["skipped_images"] == records[-1]["train_skipped"] + 1
    assert records[-1]["train_skipped"] <= 1


def test_fresh_run_refuses_a_directory_with_checkpoints(tmp_path: Path) -> None:
    run_training(tiny_config(tmp_path / "run"))
    with pytest.raises(ValueError, match=r"run.out.*already holds a checkpoint.*--resume"):
        run_training(tiny_config(tmp_path / "run"))


def test_tensorboard_missing_is_a_clear_error(tmp_path: Path) -> None:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"run.tensorboard.*atlas-vision\[tensorboard\]"):
            run_training(tiny_config(tmp_path / "run", run={"tensorboard": True}))
    else:
        run_training(tiny_config(tmp_path / "run", run={"tensorboard": True}))
        assert any((tmp_path / "run" / "tensorboard").iterdir())
