"""Shared helpers for the training tests (tiny configs, subprocess launching); holds no tests itself."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from atlas_vision.train import TrainConfig, from_dict

REPO = Path(__file__).resolve().parents[1]

# Small enough for a few seconds per epoch on a shared 2-core CPU.
TINY: dict[str, Any] = {
    "data": {
        "task": "fake",
        "img_size": [32, 32],
        "train_samples": 16,
        "val_samples": 10,
        "fake_classes": 3,
        "num_workers": 0,
    },
    "model": {"name": "test_atlas"},
    "optim": {"batch_size": 8, "lr": 1e-3, "weight_decay": 0.01},
    "schedule": {"epochs": 1, "warmup_epochs": 0},
    "run": {"device": "cpu", "progress": "never", "plots": False, "seed": 3, "threads": 1},
}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for everything a test module runs in-process (eval, predict): on a busy 2-core machine
    idle torch threads spin and make tiny models 10-30x slower.  Import it into a test module to use it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _merge(dst: dict[str, Any], src: dict[str, Any]) -> dict[str, Any]:
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value)
        else:
            dst[key] = value
    return dst


def tiny_tree(out: Path | str, **sections: dict[str, Any]) -> dict[str, Any]:
    """The TINY config as a nested dict with ``run.out = out`` and per-section overrides merged in."""
    tree = copy.deepcopy(TINY)
    tree["run"]["out"] = str(out)
    tree = _merge(tree, sections)
    if tree["data"].get("task") not in (None, "fake", "longrange", "pathfinder"):
        # the procedural-task knobs are errors for tasks that read files (they would do nothing there)
        for key in ("train_samples", "val_samples", "fake_classes"):
            if key not in sections.get("data", {}):
                tree["data"].pop(key, None)
    return tree


def tiny_config(out: Path | str, **sections: dict[str, Any]) -> TrainConfig:
    """A validated TrainConfig built from :func:`tiny_tree`."""
    return from_dict(TrainConfig, tiny_tree(out, **sections))


def write_yaml(path: Path, tree: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def cli_env() -> dict[str, str]:
    """Environment for ``python -m atlas_vision`` subprocesses: the source tree importable, one intra-op thread."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    src = str(REPO / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def launch(args: list[str], cwd: Path, **kwargs: Any) -> subprocess.Popen:
    """Start ``python -m atlas_vision ARGS`` (stdout/stderr captured)."""
    return subprocess.Popen(
        [sys.executable, "-m", "atlas_vision", *args],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )
