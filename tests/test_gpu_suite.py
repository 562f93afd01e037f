"""Smoke tests of the one-shot GPU suite on CPU.

The default suite runs the smoke plan of the measurement phases in-process (every item kind, every backend; flex
reported as unavailable on CPU, where PyTorch has no FlexAttention backward) and checks the option errors; the whole script as CI runs it
(``benchmarks/gpu_suite.py OUT --device cpu --smoke``: five child processes, ~30 s on an idle 2-core machine) is
marked slow.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_suite.py"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_gpu_suite_smoke_on_cpu_writes_every_result(tmp_path: Path) -> None:
    out = tmp_path / "suite"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), "--device", "cpu", "--smoke", "--budget-s", "400"],
        capture_output=True,
        text=True,
        timeout=580,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = (out / "summary.md").read_text()
    for phase in ("tests", "contract", "train", "large", "mixers", "vs the paper"):
        assert f"## {phase}" in summary, summary
    train = _rows(out / "train.csv")
    by_backend = {r["backend"]: r["status"] for r in train if r["model"] == "atlas_tiny"}
    assert by_backend["sdpa"] == "ok" and by_backend["split"] == "ok", train
    assert by_backend["flex"].startswith(("ok", "unavailable")), train  # flex: no backward on CPU
    assert all(float(r["images_per_s"]) > 0 for r in train if r["status"] == "ok")
    contract = _rows(out / "contract.csv")
    assert {r["status"] for r in contract if r["backend"] in ("sdpa", "split")} == {"ok"}, contract
    large = _rows(out / "large.csv")
    assert [r["kind"] for r in large] == ["train", "infer"] and {r["status"] for r in large} == {"ok"}, large
    tests = _rows(out / "tests.csv")
    assert tests[0]["status"].startswith("ok"), tests
    assert list((out / "mixers").glob("*.csv")), "bench mixers wrote no CSV"


def test_gpu_suite_rejects_bad_options(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), "--phases", "tests,bogus"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2 and "bogus" in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("script", "argv"),
    [
        ("gpu_suite_items.py", ["--help"]),
        ("gpu_suite_items.py", ["bogus", "plan.json", "rows.jsonl"]),
        ("core_workloads.py", ["--help"]),
        ("core_workloads.py", []),
    ],
)
def test_child_scripts_answer_a_wrong_call_with_their_usage(monkeypatch, script: str, argv: list[str]) -> None:
    """The suites' child scripts, run by hand with wrong arguments, say how they are called and who calls them
    (in-process through runpy: the modules' torch and timm imports are already paid for)."""
    import runpy

    path = REPO / "benchmarks" / script
    monkeypatch.setattr(sys, "argv", [str(path), *argv])
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(path), run_name="__main__")
    message = str(exit_info.value.code)
    assert message.startswith(f"usage: python {path}") and repr(argv) in message, message


def test_smoke_plan_runs_every_item_kind_in_process(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import json

    from gpu_suite import build_plan
    from gpu_suite_items import run_phase

    rows_path = tmp_path / "rows.jsonl"
    items = [
        *build_plan("contract", ("sdpa", "split", "flex"), smoke=True, dtype="bf16"),
        *[i for i in build_plan("train", ("sdpa", "flex"), smoke=True, dtype="bf16") if i["backend"]],
        build_plan("large", ("sdpa",), smoke=True, dtype="bf16")[-1],
    ]
    run_phase({"phase": "smoke", "device": "cpu", "deadline_s": 600, "items": items}, rows_path)
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    assert len(rows) == len(items)
    status = {(r["kind"], r["backend"]): r["status"] for r in rows}
    assert status[("contract", "sdpa")] == "ok" and status[("contract", "split")] == "ok", rows
    assert status[("train", "sdpa")] == "ok" and status[("infer", "sdpa")] == "ok", rows
    for backend_status in (status[("contract", "flex")], status[("train", "flex")]):
        assert backend_status.startswith("unavailable: backend 'flex'"), rows  # CPU: forward only, both need grads
        assert "no backward on device 'cpu'" in backend_status, rows
    assert all(r["images_per_s"] > 0 and r["peak_mem_mb"] is not None for r in rows if "images_per_s" in r)


def test_items_skip_when_the_budget_is_spent(tmp_path: Path) -> None:
    """An item whose estimate does not fit before the phase deadline is recorded as skipped, not run."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import json

    from gpu_suite_items import run_phase

    rows = tmp_path / "rows.jsonl"
    item = {
        "kind": "train",
        "model": "atlas_tiny",
        "img": 64,
        "backend": "sdpa",
        "batch": 2,
        "dtype": "fp32",
        "warmup": 0,
        "iters": 1,
        "est_s": 1000,
    }
    run_phase({"phase": "train", "device": "cpu", "deadline_s": 5, "items": [item]}, rows)
    (row,) = [json.loads(line) for line in rows.read_text().splitlines()]
    assert row["status"].startswith("skipped: time budget spent"), row


def test_train_plan_measures_the_comparison_first():
    """A budget cut drops the least important rows: at each size Atlas with the first backend and the baselines
    come before the other backends' rows (split, then flex, which compiles)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_suite import BASELINES, build_plan

    plan = build_plan("train", ("sdpa", "split", "flex"), smoke=False, dtype="bf16")
    order = [(i["model"], i["img"], i["backend"]) for i in plan]
    sizes = [(m, img) for m, img, b in order if b == "sdpa"]
    assert sizes == [("atlas_base", 1024), ("atlas_small", 2048), ("atlas_small", 4096)], order
    expected_head = []
    for m, img in sizes:
        expected_head += [(m, img, "sdpa"), *((b, img, "") for b in BASELINES)]
    assert order[: len(expected_head)] == expected_head, order
    assert [b for _, _, b in order[len(expected_head) :]] == ["split"] * 3 + ["flex"] * 3, order


def test_pytest_outcomes_count_a_killed_verbose_run():
    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_suite import pytest_outcomes

    log = """============================= test session starts ==============================
tests/test_ops.py::test_fast_paths_on_test_device_match_float64_reference[torch.float32-sdpa] PASSED [  8%]
tests/test_ops.py::test_fast_paths_on_test_device_match_float64_reference[torch.float32-flex] FAILED [ 16%]
tests/test_flex.py::test_flex_forward_and_backward_on_cuda_match_float64_reference[B3-5x9x7-k(2, 4, 4)-s2-h1-d16-torch.float32] PASSED [ 25%]
tests/test_flex.py::test_flex_forward_and_backward_on_cuda_match_float64_reference[B1-19x26-k4-s2-h2-d16-torch.bfloat16] SKIPPED (x) [ 33%]
"""
    assert pytest_outcomes(log) == (
        "2 passed, 1 failed, 1 skipped "
        "(tests/test_ops.py::test_fast_paths_on_test_device_match_float64_reference[torch.float32-flex])"
    )
    summary = log + "FAILED tests/test_ops.py::test_x - AssertionError\n=== 1 failed, 2 passed in 3.0s ===\n"
    assert pytest_outcomes(summary).startswith("2 passed, 1 failed, 1 skipped")
    assert pytest_outcomes("collected 0 items\n") == "no test finished"


def _run_device_wrapper(out: Path, env: dict[str, str], timeout: int) -> subprocess.CompletedProcess[str]:
    """``OUT=out bash benchmarks/gpu_suite_device.sh --device cpu --smoke`` with this interpreter and ``env`` added."""
    import os

    out.mkdir()
    return subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_suite_device.sh"), "--device", "cpu", "--smoke"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "OUT": str(out), "PYTHON": sys.executable, **env},
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_device_wrapper_returns_at_most_eight_files(tmp_path: Path) -> None:
    """``benchmarks/gpu_suite_device.sh`` (the one call on a lent GPU machine) leaves the summary, the CSVs, the
    device description and one archive in ``$OUT``: the device tool returns at most 8 files."""
    import tarfile

    out = tmp_path / "out"
    proc = _run_device_wrapper(out, {}, timeout=580)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    names = sorted(p.name for p in out.iterdir())
    assert len(names) <= 8 and {"summary.md", "train.csv", "gpu_suite.tgz", "device.txt"} <= set(names), names
    with tarfile.open(out / "gpu_suite.tgz") as archive:
        members = archive.getnames()
    assert "gpu_suite/summary.md" in members and "gpu_suite/suite.log" in members, members


def test_device_wrapper_stops_at_once_on_a_too_old_timm_without_a_carried_wheel(tmp_path: Path) -> None:
    """On an image whose timm is older than atlas-vision's floor and with no wheel carried, the wrapper exits 3 with
    a message that says what to carry, before any phase runs (and spends the lent machine's minutes)."""
    fake = tmp_path / "site" / "timm"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('__version__ = "1.0.15"\n')
    out = tmp_path / "out"
    env = {"PYTHONPATH": str(tmp_path / "site"), "GPU_SUITE_WHEELS": str(tmp_path / "no_wheels")}
    proc = _run_device_wrapper(out, env, timeout=120)
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "found timm 1.0.15" in proc.stdout + proc.stderr
    assert "carry .whl" in proc.stdout
    assert not (out / "summary.md").exists()


def _paper_rows() -> list[dict[str, Any]]:
    """Train rows as the full plan would write them, with an OOM, a skip and a backend that beats sdpa."""

    def row(model: str, img: int, backend: str, ips: float | None, status: str = "ok") -> dict[str, Any]:
        return {"model": model, "img": img, "backend": backend, "images_per_s": ips, "status": status}

    return [
        row("atlas_base", 1024, "sdpa", 10.0),
        row("vit_base_patch16_224", 1024, "", 8.0),
        row("convnext_base", 1024, "", None, "oom"),
        row("swin_base_patch4_window7_224", 1024, "", None, "skipped: time budget spent (12 s left)"),
        row("atlas_small", 4096, "sdpa", None, "oom"),
        row("convnext_base", 4096, "", 0.5),
        row("atlas_base", 1024, "split", 8.0),
        row("atlas_small", 4096, "split", 1.0),
        row("atlas_base", 1024, "flex", 12.0),
        row("atlas_small", 4096, "flex", None, "error: RuntimeError: x"),
    ]


def test_paper_comparison_divides_per_image_times_and_keeps_failed_rows_as_status() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_vs_paper import atlas_vs_baselines, backends_table

    table = atlas_vs_baselines(_paper_rows())
    # Atlas at 1024: its fastest backend (flex, 12 img/s); ViT-B 8 img/s takes 12 / 8 = 1.5x Atlas's time per image
    assert "| 1024 | atlas_base (flex) | 12 | vit_base_patch16_224 | 8 | 1.5 | 1.15 (Table 1) | ok |" in table, table
    assert "| 1024 | atlas_base (flex) | 12 | convnext_base |  |  | 4.3 (Table 1) | oom |" in table, table
    assert any("swin_base_patch4_window7_224 |  |  | 1.6 (Table 1) | skipped: time budget spent" in r for r in table)
    # at 4096 only split ran: 1 img/s against ConvNeXt's 0.5 -> 2.0 (the paper has ConvNeXt out of memory there)
    assert "| 4096 | atlas_small (split) | 1 | convnext_base | 0.5 | 2 | OOM (Fig. 1a) | ok |" in table, table
    backends = backends_table(_paper_rows())
    assert backends[0] == "| model | img | sdpa img/s | split img/s | flex img/s | fastest | others / sdpa |"
    assert "| atlas_base | 1024 | 10 | 8 | 12 | flex | split 0.8x, flex 1.2x |" in backends, backends
    assert "| atlas_small | 4096 | oom | 1 | error | split |  |" in backends, backends


def test_paper_comparison_reads_a_result_folder_and_refuses_an_empty_one(tmp_path: Path, capsys) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from gpu_vs_paper import main

    assert main([str(tmp_path)]) == 2 and "no train.csv or large.csv" in capsys.readouterr().out
    assert main([]) == 2 and "usage" in capsys.readouterr().out
    rows = _paper_rows()
    with (tmp_path / "train.csv").open("w", newline="") as f:  # the CSV round trip: every value becomes a string
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    large = [{"kind": "train", "model": "atlas_base", "img": 8192, "checkpointing": True, "step_ms": 900.0}]
    large[0] |= {"peak_mem_mb": 40960.0, "status": "ok"}
    with (tmp_path / "large.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(large[0]))
        writer.writeheader()
        writer.writerows(large)
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| 1024 | atlas_base (flex) | 12 | vit_base_patch16_224 | 8 | 1.5 | 1.15 (Table 1) | ok |" in out, out
    assert "| train | atlas_base | 8192 | True | 900 | 40 | ok |" in out, out
