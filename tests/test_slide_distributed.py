"""``torchrun --nproc_per_node 2 -m atlas_vision slide embed`` (gloo on CPU) shards the regions over the ranks and
writes exactly the features.zarr of a one-process run, for every slide of a folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from slide_support import assert_same_features, cli_args, small_slide
from test_train_support import cli_env, one_thread  # noqa: F401 (autouse fixture)

from atlas_vision.cli import main as cli_main


def test_torchrun_two_ranks_equals_one_process(tmp_path: Path) -> None:
    folder = tmp_path / "slides"
    folder.mkdir()
    small_slide(folder / "a.tif", 960, 704, seed=1)  # 8 x 6 regions (of 192 - 64 px steps at level 0)
    small_slide(folder / "b.tif", 704, 512, seed=2)
    assert cli_main(cli_args(folder, tmp_path / "one")) == 0
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "atlas_vision",
        *cli_args(folder, tmp_path / "two"),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=400, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for slide_id in ("a", "b"):
        assert_same_features(
            tmp_path / "two" / slide_id / "features.zarr", tmp_path / "one" / slide_id / "features.zarr"
        )
        two = json.loads((tmp_path / "two" / slide_id / "slide.json").read_text())
        one = json.loads((tmp_path / "one" / slide_id / "slide.json").read_text())
        ranks = two["timings"]["ranks"]
        assert [r["rank"] for r in ranks] == [0, 1] and all(r["regions"] > 0 for r in ranks)
        assert sum(r["regions"] for r in ranks) == two["regions"]["done"] == one["regions"]["done"]
        assert two["embedding"] == one["embedding"]
    assert proc.stderr.count("a: done") == 1  # only rank 0 reports
