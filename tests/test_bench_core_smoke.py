"""benchmarks/bench_core.py runs end to end on CPU, each option reaching the measured child."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_core.py"


def _run(tmp_path: Path, *options: str) -> list[dict[str, str]]:
    out = tmp_path / "models.csv"
    argv = [sys.executable, str(SCRIPT), "models", "--models", "test_atlas", "--res", "64", "--warmup", "0"]
    argv += ["--iters", "1", "--threads", "1", "--timeout", "300", "--out", str(out), *options]
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=600)
    with out.open() as f:
        return list(csv.DictReader(f))


def test_models_bf16_channels_last_rows(tmp_path: Path) -> None:
    rows = _run(tmp_path, "--cpu-precision", "bf16", "--channels-last", "--cpu-allocator", "keep")
    assert [r["mode"] for r in rows] == ["fwd", "fwd_bwd"]
    for row in rows:
        assert "error" not in row or not row["error"], row
        assert row["dtype"] == "bf16-autocast" and row["output_dtype"] == "bfloat16"
        assert row["channels_last"] == "True" and row["cpu_allocator"] == "keep"
        assert float(row["ms_median"]) > 0


def test_models_default_is_fp32(tmp_path: Path) -> None:
    rows = _run(tmp_path)
    assert {r["dtype"] for r in rows} == {"fp32"} and {r["output_dtype"] for r in rows} == {"float32"}
    assert {r["channels_last"] for r in rows} == {"False"}
    assert all(float(r["ms_median"]) > 0 for r in rows)


@pytest.mark.slow  # inductor's first compile of the model, forward and backward: ~2 min on 2 cores with a cold cache
def test_models_compile_times_compiled_graphs(tmp_path: Path) -> None:
    rows = _run(tmp_path, "--compile", "--warmup", "1")
    assert [r["mode"] for r in rows] == ["fwd", "fwd_bwd"]
    for row in rows:
        assert "error" not in row or not row["error"], row
        assert row["compile"] == "True" and int(row["compiled_graphs"]) >= 1, row
        assert float(row["ms_first_warmup"]) > float(row["ms_median"]) > 0  # the first call compiled


def test_models_compile_without_warmup_is_refused(tmp_path: Path) -> None:
    argv = [sys.executable, str(SCRIPT), "models", "--compile", "--warmup", "0", "--out", str(tmp_path / "x.csv")]
    proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--compile needs --warmup >= 1" in proc.stderr and "got 0" in proc.stderr
