"""The scripts that turn benchmark CSVs and run directories into docs/results tables (benchmarks/*.py)."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


results_tables = _load("results_tables")
merge_bench_csv = _load("merge_bench_csv")
collect_runs = _load("collect_runs")


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _acc(mixer: str, seed: int, top1: float, train_s: float = 10.0) -> dict:
    return {"mixer": mixer, "measure": "accuracy", "tokens": 64, "seed": seed, "val_top1": top1, "train_s": train_s}


def test_accuracy_table_mean_std_and_order(tmp_path):
    rows = [_acc("window", 0, 50.0), _acc("msa", 0, 100.0), _acc("msa", 1, 80.0), _acc("msa", 2, 90.0)]
    path = _write_csv(tmp_path / "m.csv", rows)
    table = results_tables.accuracy(str(path), ["mixer"], ["msa"]).splitlines()
    assert table[2].startswith("| msa | 0,1,2 | 100.0 / 80.0 / 90.0 | 90.0 ± 10.0 |")  # stdev of 100, 80, 90 = 10
    assert table[3].startswith("| window | 0 | 50.0 | 50.0 ± 0.0 |")


def test_speed_table_fits_the_exponent_and_ratio(tmp_path):
    rows = [
        {"mixer": m, "measure": "speed", "status": "ok", "tokens": n, "fwd_bwd_ms": t, "peak_mem_mb": 1.0}
        for n in (1024, 4096, 16384)
        for m, t in (("msa", n / 100), ("global", (n / 1024) ** 2))
    ]
    table = results_tables.speed(str(_write_csv(tmp_path / "s.csv", rows)), ["mixer"], "msa")
    lines = {line.split(" | ")[0]: line for line in table.splitlines()}
    assert lines["| msa"].endswith("| 1.00 |")
    assert lines["| global"].endswith("| 2.00 |")
    assert "(0.10x)" in lines["| global"]  # 1 ms against msa's 10.24 ms at 1024 tokens


def test_run_names_join_label_columns():
    assert results_tables._name({"ablation": "window", "variant": "16"}, ["ablation", "variant"]) == "window=16"
    row = {"model": "atlas_tiny", "kwargs": "communication=none"}
    assert results_tables._name(row, ["model", "kwargs"]) == "atlas_tiny communication=none"
    assert results_tables._name({"model": "atlas_tiny", "kwargs": ""}, ["model", "kwargs"]) == "atlas_tiny"


def test_merge_keeps_every_row_and_refuses_a_run_made_twice(tmp_path, monkeypatch):
    a = _write_csv(tmp_path / "a.csv", [_acc("msa", 0, 100.0)])
    b = _write_csv(tmp_path / "b.csv", [{**_acc("global", 0, 99.0), "extra": "x"}])
    out = tmp_path / "out" / "mixers.csv"
    monkeypatch.setattr(sys, "argv", ["merge", "--out", str(out), str(a), str(b)])
    merge_bench_csv.main()
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["mixer"] for r in rows] == ["msa", "global"] and rows[1]["extra"] == "x" and rows[0]["extra"] == ""
    assert (out.parent / "mixers_accuracy_vs_time.png").stat().st_size > 0
    with pytest.raises(ValueError, match="already in"):
        merge_bench_csv.merge([a, a], ["mixer"])


def _fake_run(run_dir: Path, seed: int, top1: float, interrupted: bool = False) -> Path:
    run_dir.mkdir(parents=True)
    config = {
        "model": {"name": "atlas_tiny", "kwargs": {"communication": "none"}},
        "run": {"seed": seed},
        "data": {"task": "longrange", "img_size": [64, 64]},
    }
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    summary = {
        "val_top1": top1,
        "epochs": 15,
        "train_s": 1.0,
        "interrupted": interrupted,
        "environment": {"device": "cpu", "git_commit": "abc1234"},
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def test_collect_runs_appends_and_refuses_duplicates_and_interrupted_runs(tmp_path, monkeypatch):
    out = tmp_path / "runs.csv"
    first, second = _fake_run(tmp_path / "r0", 0, 100.0), _fake_run(tmp_path / "r1", 1, 50.0)
    monkeypatch.setattr(sys, "argv", ["collect", "--out", str(out), str(first)])
    assert collect_runs.main() == 0
    monkeypatch.setattr(sys, "argv", ["collect", "--append", "--out", str(out), str(second)])
    assert collect_runs.main() == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["seed"], r["val_top1"], r["kwargs"], r["git_commit"]) for r in rows] == [
        ("0", "100.0", "communication=none", "abc1234"),
        ("1", "50.0", "communication=none", "abc1234"),
    ]
    monkeypatch.setattr(sys, "argv", ["collect", "--append", "--out", str(out), str(second)])
    assert collect_runs.main() == 2  # already recorded
    broken = _fake_run(tmp_path / "r2", 2, 10.0, interrupted=True)
    monkeypatch.setattr(sys, "argv", ["collect", "--append", "--out", str(out), str(broken)])
    assert collect_runs.main() == 2
    with open(out, newline="") as f:
        assert len(list(csv.DictReader(f))) == 2  # nothing written by the refused calls


plateau_probe = _load("plateau_probe")


def test_plateau_probe_linear_probe_finds_a_linear_target_and_not_a_random_one() -> None:
    n = plateau_probe.N_TRAIN + plateau_probe.N_TEST
    g = torch.Generator().manual_seed(0)
    features = torch.randn(n, 8, generator=g)
    linear = (features[:, 0] - 0.5 * features[:, 3] > 0).long()  # a linear function of the features
    unrelated = torch.randint(0, 3, (n,), generator=g)  # independent of them
    test = slice(plateau_probe.N_TRAIN, None)
    assert (plateau_probe.linear_probe(features, linear) == linear[test]).float().mean() > 0.97
    assert (plateau_probe.linear_probe(features, unrelated) == unrelated[test]).float().mean() < 0.40


def test_plateau_probe_weight_norms_cover_every_weight_matrix_once() -> None:
    import timm

    import atlas_vision  # noqa: F401

    model = timm.create_model("test_atlas", num_classes=2)
    norms = plateau_probe.weight_norms(model)
    assert {"stem", "head"} <= set(norms) and any(k.startswith("stages.1:") for k in norms)
    matrices = [t for name, t in model.state_dict().items() if name.endswith("weight") and t.dim() >= 2]
    total = sum(float(t.square().sum()) for t in matrices) ** 0.5
    assert sum(v**2 for v in norms.values()) ** 0.5 == pytest.approx(total, rel=1e-6)
