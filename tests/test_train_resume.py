"""Resume equivalence: a run killed (SIGKILL) after its first checkpoint, or stopped with Ctrl-C (SIGINT) in the
middle of an epoch, and resumed with ``--resume`` ends exactly like an uninterrupted run of the same seed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import torch
from test_train_support import launch, tiny_config, tiny_tree, write_yaml

from atlas_vision.train import TrainConfig, build_config, run_training
from atlas_vision.train.checkpoint import read_meta

# 3 epochs x 4 updates; EMA, label smoothing and warm-up on, so every piece of state matters.
SECTIONS = {
    "data": {"train_samples": 16, "val_samples": 8},
    "optim": {"batch_size": 4, "ema_decay": 0.9, "label_smoothing": 0.1},
    "schedule": {"epochs": 3, "warmup_epochs": 1},
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The uninterrupted run."""
    return run_training(tiny_config(tmp_path_factory.mktemp("ref") / "run", **SECTIONS))


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"training exited ({proc.returncode}) before {path} appeared:\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout}s")
        time.sleep(0.02)


def _resume(run_dir: Path) -> dict:
    cfg = build_config(TrainConfig, run_dir / "config.yaml", overrides=[("run.resume", [str(run_dir)])])
    return run_training(cfg)


def _same_result(resumed: dict, reference: dict) -> None:
    assert resumed["steps"] == reference["steps"] and resumed["epochs"] == reference["epochs"]
    assert resumed["val_top1"] == reference["val_top1"]
    assert resumed["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-9, abs=0)
    assert resumed["val_loss"] == pytest.approx(reference["val_loss"], rel=1e-9, abs=0)


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path: Path, reference: dict) -> None:
    run_dir = tmp_path / "run"
    config = write_yaml(tmp_path / "tiny.yaml", tiny_tree(run_dir, **SECTIONS))
    proc = launch(["train", "--config", str(config)], cwd=tmp_path)
    _wait_for(run_dir / "checkpoints" / "last" / "meta.json", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "summary.json").exists(), "the run finished before it could be killed"
    epoch_done = read_meta(run_dir / "checkpoints" / "last")["epoch"]
    assert 1 <= epoch_done < 3

    resumed = _resume(run_dir)
    _same_result(resumed, reference)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3], "metrics.jsonl must hold each epoch exactly once"


@pytest.mark.parametrize(
    ("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_signal_mid_epoch_writes_checkpoint_and_resumes_exactly(
    signum: int, exit_code: int, tmp_path: Path, reference: dict
) -> None:
    """Ctrl-C / SIGTERM in the middle of an epoch stops at the next optimizer update with exit code 130 / 143 and
    a mid-epoch checkpoint (data position, RNG states, partial-epoch statistics); resuming from it matches the
    uninterrupted run.  In-process: a watcher thread signals this process once the first every-step checkpoint
    exists, and the handler runs in the main thread, as for a terminal Ctrl-C."""
    run_dir = tmp_path / "run"
    marker = run_dir / "checkpoints" / "last" / "meta.json"

    def signal_after_first_checkpoint() -> None:
        deadline = time.monotonic() + 240
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(os.getpid(), signum)

    previous = signal.getsignal(signum)
    watcher = threading.Thread(target=signal_after_first_checkpoint, daemon=True)
    watcher.start()
    summary = run_training(tiny_config(run_dir, **SECTIONS, run={"ckpt_every_steps": 1}))
    watcher.join()
    assert signal.getsignal(signum) is previous, "the signal handler was not restored"
    assert summary["interrupted"] and summary["exit_code"] == exit_code
    assert json.loads((run_dir / "summary.json").read_text())["interrupted"]
    meta = read_meta(run_dir / "checkpoints" / "last")
    assert meta["batch_in_epoch"] > 0, f"expected a mid-epoch checkpoint, got {meta}"

    _same_result(_resume(run_dir), reference)


def test_summary_records_what_produced_the_run(reference: dict) -> None:
    env = reference["environment"]
    assert env["torch"] == torch.__version__ and env["seed"] == 3  # tiny_config's run.seed
    assert env["device"] == "cpu" and env["git_commit"] and env["atlas_vision"] and env["date"]
