"""Resume, nothing lost: a run stopped by a write failure or by SIGKILL continues with the regions not yet written,
and the finished features.zarr equals an uninterrupted run's."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from slide_support import assert_same_features, cli_args, small_slide
from test_train_support import launch, one_thread  # noqa: F401 (autouse fixture)

from atlas_vision.cli import main as cli_main
from atlas_vision.slide import open_features
from atlas_vision.slide.progress import read_done
from atlas_vision.slide.store import FeatureStore


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    return small_slide(tmp_path_factory.mktemp("slides") / "r.tif", 1024, 1024, seed=7)  # 8 x 8 regions


@pytest.fixture(scope="module")
def reference(slide: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    assert cli_main(cli_args(slide, out)) == 0
    return out / "r"


def test_write_failure_claims_nothing_and_resume_equals_uninterrupted(
    slide: Path, reference: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    real_write = FeatureStore.write_region
    calls = {"n": 0}

    def failing_write(self, region, maps, embedding, probs):
        calls["n"] += 1
        if calls["n"] == 4:
            real_write(self, region, maps[:1], embedding, probs)  # part of the region hits the disk, then...
            raise OSError(28, "No space left on device")
        real_write(self, region, maps, embedding, probs)

    monkeypatch.setattr(FeatureStore, "write_region", failing_write)
    assert cli_main(cli_args(slide, tmp_path)) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert read_done(tmp_path / "r" / "progress") == {0, 1, 2}  # the half-written 4th region is not claimed
    assert not (tmp_path / "r" / "slide.json").exists()
    monkeypatch.setattr(FeatureStore, "write_region", real_write)
    assert cli_main(cli_args(slide, tmp_path)) == 0
    assert_same_features(tmp_path / "r" / "features.zarr", reference / "features.zarr")
    import json

    summary = json.loads((tmp_path / "r" / "slide.json").read_text())
    assert summary["regions"]["done_before_this_run"] == 3 and summary["regions"]["done"] == 64


def test_sigkill_then_restart_equals_uninterrupted(slide: Path, reference: Path, tmp_path: Path) -> None:
    proc = launch(cli_args(slide, tmp_path, "--read-threads", "1"), cwd=tmp_path)
    log = tmp_path / "r" / "progress" / "done-rank0.log"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and log.read_text().count("\n") >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read()
    done = read_done(tmp_path / "r" / "progress")
    assert 3 <= len(done) < 64 and not (tmp_path / "r" / "slide.json").exists()
    restart = launch(cli_args(slide, tmp_path), cwd=tmp_path)
    output, _ = restart.communicate(timeout=300)
    assert restart.returncode == 0, output
    assert_same_features(tmp_path / "r" / "features.zarr", reference / "features.zarr")
    feats = open_features(tmp_path / "r")
    assert len(feats.attrs["regions_done"]) == 64 and np.asarray(feats.valid[0][...]).all()


def test_a_line_cut_by_a_kill_is_dropped_before_appending(tmp_path: Path) -> None:
    from atlas_vision.slide.progress import ProgressLog

    (tmp_path / "done-rank0.log").write_text("3\n12\n1")  # killed while writing "17\n"
    assert read_done(tmp_path) == {3, 12}
    with ProgressLog(tmp_path, rank=0) as log:
        log.mark_done(7)
    assert read_done(tmp_path) == {3, 7, 12}
