"""benchmarks/bench_3d.py: both measured children run on CPU at tiny sizes (in this process, as its subprocess runs
them), so a broken import or model name shows up here rather than in a 30-minute benchmark run."""

from __future__ import annotations

from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench_3d(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_3d

    return bench_3d


@pytest.mark.parametrize("mixer", ["msa", "global"])
def test_block_child_times_one_3d_block(bench_3d, mixer):
    spec = {"mixer": mixer, "side": 8, "dim": 16, "heads": 2, "window": 4, "stride": 2, "backend": "auto",
            "warmup": 0, "iters": 1}  # fmt: skip
    result = bench_3d._block_child(spec)
    assert result["ms_median"] > 0 and result["scales"] == (2 if mixer == "msa" else 1)


def test_volume_child_builds_a_3d_variant_by_name(bench_3d):
    result = bench_3d._volume_child({"model": "atlas3d_tiny", "size": [32, 32, 32], "iters": 1})
    assert len(result["s_per_volume"]) == 1 and result["params_m"] > 0
    assert result["scales"]  # the layout's description, one line per scale
