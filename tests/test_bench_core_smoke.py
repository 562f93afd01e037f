"""benchmarks/bench_core.py runs end to end on CPU, each option reaching the measured child."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "bench_core.py"
SMOKE = ["models", "--models", "test_atlas", "--res", "64", "--warmup", "0", "--iters", "1"]


@pytest.fixture
def bench_modules(monkeypatch):
    """``bench_core`` (the parent) and ``core_workloads`` (the measured child) imported as the scripts import them."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_core
    import core_workloads

    return bench_core, core_workloads


def _run(tmp_path: Path, *options: str) -> list[dict[str, str]]:
    out = tmp_path / "models.csv"
    argv = [sys.executable, str(SCRIPT), *SMOKE, "--threads", "1", "--timeout", "300", "--out", str(out), *options]
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


def test_models_default_is_fp32(bench_modules, tmp_path: Path) -> None:
    """The defaults, planned by the parent and run by the child's own function in this process (no subprocess: the
    end-to-end path is the test above)."""
    bench_core, core_workloads = bench_modules
    specs = bench_core.plan("models", bench_core.parse_args([*SMOKE, "--out", str(tmp_path / "x.csv")]))
    assert [s["mode"] for s in specs] == ["fwd", "fwd_bwd"]
    for spec in specs:
        assert spec["cpu_precision"] == "fp32" and not spec["channels_last"] and not spec["compile"]
        assert spec["cpu_allocator"] == "default" and spec["conv3x3"] == "winograd"
        result = core_workloads.child(spec)
        assert result["output_dtype"] == "float32" and result["ms_median"] > 0
        assert result["device"].startswith("cpu (") and result["torch"]


def test_parent_never_imports_torch_and_names_the_childs_conv_algorithms(bench_modules) -> None:
    bench_core, _ = bench_modules
    from atlas_vision.layers.conv3x3 import ALGORITHMS

    assert bench_core.CONV3X3_ALGORITHMS == ALGORITHMS
    code = f"import sys; sys.path.insert(0, {str(BENCHMARKS)!r}); import bench_core; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout == "False\n"


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
