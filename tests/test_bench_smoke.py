"""Smoke tests of `atlas-vision bench mixers|ablations|models` at tiny sizes, plus the timing/report helpers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from atlas_vision.bench.ablations import ABLATION_COLUMNS, ablation_variants
from atlas_vision.bench.cli import main
from atlas_vision.bench.common import parse_token_grid
from atlas_vision.bench.mixers import MIXER_COLUMNS, MixerShape
from atlas_vision.bench.models import MODEL_COLUMNS
from atlas_vision.bench.plots import fit_exponent
from atlas_vision.bench.report import ENV_COLUMNS, read_csv, write_csv
from atlas_vision.bench.timing import measure_peak_memory, time_fn

TINY = [
    "--device",
    "cpu",
    "--warmup",
    "0",
    "--iters",
    "1",
    "--dim",
    "16",
    "--heads",
    "2",
    "--depth",
    "2",
    "--window",
    "4",
    "--pool-stride",
    "2",
]
REQUIRED_MIXER_COLUMNS = {
    "mixer",
    "tokens",
    "dim",
    "depth",
    "batch",
    "device",
    "fwd_ms",
    "fwd_bwd_ms",
    "peak_mem_mb",
    "val_top1",
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny shapes gain nothing from intra-op threads; on a shared CPU extra threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _check_rows(path: Path, columns: tuple[str, ...]) -> list[dict[str, str]]:
    rows = read_csv(path)
    assert rows, f"{path} has no rows"
    assert tuple(rows[0].keys()) == columns
    assert set(ENV_COLUMNS) <= set(rows[0])
    for row in rows:
        assert row["device"] == "cpu" and row["torch"] == torch.__version__ and row["dtype"] == "fp32"
    return rows


def test_bench_mixers_speed_and_accuracy(tmp_path: Path) -> None:
    out = tmp_path / "mixers"
    status = main(
        [
            "mixers",
            *TINY,
            "--mixers",
            "window,swin,global,hat,dilated,mamba,msa",
            "--tokens",
            "64,6x10",
            "--task",
            "fake",
            "--img-size",
            "32",
            "--patch-size",
            "4",
            "--train-samples",
            "8",
            "--val-samples",
            "4",
            "--train-batch",
            "4",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    rows = _check_rows(out / "mixers.csv", MIXER_COLUMNS)
    assert REQUIRED_MIXER_COLUMNS <= set(rows[0])
    speed = [r for r in rows if r["measure"] == "speed"]
    accuracy = [r for r in rows if r["measure"] == "accuracy"]
    assert len(speed) == 7 * 2 and len(accuracy) == 7
    for row in speed:
        assert row["status"] == "ok" and float(row["fwd_ms"]) > 0 and float(row["fwd_bwd_ms"]) > 0
        assert float(row["peak_mem_mb"]) >= 0 and row["val_top1"] == ""
    assert {r["tokens"] for r in speed} == {"64", "60"}
    for row in accuracy:
        assert 0.0 <= float(row["val_top1"]) <= 100.0 and float(row["train_s"]) > 0 and row["tokens"] == "64"
    assert (out / "mixers_time_vs_tokens.png").stat().st_size > 0
    assert (out / "mixers_accuracy_vs_time.png").stat().st_size > 0


def test_bench_ablations_speed_only(tmp_path: Path) -> None:
    out = tmp_path / "ablations"
    status = main(
        [
            "ablations",
            *TINY,
            "--tokens",
            "64",
            "--windows",
            "4,8",
            "--strides",
            "2,4",
            "--speed-only",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    rows = _check_rows(out / "ablations.csv", ABLATION_COLUMNS)
    variants = [(r["ablation"], r["variant"]) for r in rows]
    assert variants == [
        ("communication", "single_scale"),
        ("communication", "none"),
        ("communication", "bottom_up"),
        ("communication", "top_down"),
        ("communication", "full"),
        ("composition", "stack"),
        ("composition", "conv_downsample"),
        ("composition", "atlas"),
        ("window", "4"),
        ("window", "8"),
        ("pool_stride", "2"),
        ("pool_stride", "4"),
        ("pool_op", "max"),
        ("pool_op", "avg"),
    ]
    assert all(r["status"] == "ok" and float(r["fwd_bwd_ms"]) > 0 for r in rows)


def test_bench_models_with_unavailable_baseline(tmp_path: Path) -> None:
    out = tmp_path / "models"
    status = main(
        [
            "models",
            "--device",
            "cpu",
            "--warmup",
            "0",
            "--iters",
            "1",
            "--models",
            "test_atlas,longvit",
            "--resolutions",
            "32,48x64",
            "--batch",
            "2",
            "--out",
            str(out),
        ]
    )
    assert status == 0
    rows = _check_rows(out / "models.csv", MODEL_COLUMNS)
    assert [(r["model"], r["resolution"]) for r in rows] == [
        ("test_atlas", "32"),
        ("test_atlas", "48x64"),
        ("longvit", "32"),
        ("longvit", "48x64"),
    ]
    atlas, longvit = rows[:2], rows[2:]
    assert all(r["status"] == "ok" and r["batch"] == "2" and float(r["images_per_s"]) > 0 for r in atlas)
    assert all(r["status"].startswith("unavailable:") for r in longvit)
    assert (out / "models_throughput.png").stat().st_size > 0


@pytest.mark.parametrize(
    "argv,message",
    [
        (["mixers", "--mixers", "window,nope"], "--mixers: unknown value"),
        (["mixers", "--tokens", "1000"], "not a perfect square"),
        (["mixers", "--dim", "30", "--heads", "4"], "divisible by --heads"),
        (["mixers", "--device", "tpu"], "--device"),
        (["mixers", "--dtype", "fp16", "--device", "cpu"], "fp16 needs a CUDA device"),
        (["mixers", "--iters", "0"], "--iters >= 1"),
        (["mixers", "--seeds", "a,b"], "--seeds"),
        (["mixers", "--window", "5", "--mixers", "hat"], "divisible by carrier_size"),
        (["ablations", "--ablations", "depth"], "--ablations: unknown value"),
        (["ablations", "--strides", "3", "--window", "16"], "divisible by pool_stride"),
        (["models", "--resolutions", "0"], "--resolutions"),
        (["models", "--batch", "0"], "--batch must be >= 1"),
        (["mixers", "--task", "pathfinder", "--img-size", "100"], "img_size must be square and one of"),
        (["mixers", "--epochs", "0"], "epochs, train_samples"),
        (["nope"], "invalid choice"),
        (["mixers", "--bogus"], "unrecognized arguments"),
    ],
)
def test_bench_cli_rejects_bad_options(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(argv + ["--out", "/nonexistent/never-written"] if argv[0] != "nope" else argv) == 2
    assert message in capsys.readouterr().err


def test_bench_cli_help(capsys: pytest.CaptureFixture) -> None:
    assert main([]) == 0
    assert "mixers" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------------------------
# helpers


def test_parse_token_grid() -> None:
    assert parse_token_grid("4096") == (64, 64)
    assert parse_token_grid("48x96") == (48, 96)
    with pytest.raises(ValueError, match="perfect square"):
        parse_token_grid("1000")
    for bad in ("0", "-16"):
        with pytest.raises(ValueError, match=rf"expected a positive token count .* got {bad}$"):
            parse_token_grid(bad)


def test_fit_exponent_recovers_power_law() -> None:
    tokens = [256, 1024, 4096, 16384]
    assert math.isclose(fit_exponent(tokens, [3e-3 * n**1.5 for n in tokens]), 1.5, rel_tol=1e-9)
    assert fit_exponent([1024], [1.0]) is None


def test_time_fn_and_peak_memory() -> None:
    timing = time_fn(lambda: sum(range(1000)), torch.device("cpu"), warmup=1, iters=4)
    assert timing.iters == 4 and 0 < timing.min_ms <= timing.median_ms
    with pytest.raises(ValueError):
        time_fn(lambda: None, torch.device("cpu"), iters=0)
    memory = measure_peak_memory(lambda: torch.ones(64, 2**20).sum(), torch.device("cpu"))  # 256 MiB tensor
    if memory.method == "vmhwm_reset":  # exact on Linux; the ru_maxrss fallback may under-report
        assert 200 < memory.peak_mb < 1000


def test_write_csv_rejects_unknown_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not CSV columns"):
        write_csv([{"a": 1, "typo": 2}], tmp_path / "x.csv", ("a", "b"))
    path = write_csv([{"a": 1.23456789, "b": None}], tmp_path / "x.csv", ("a", "b"))
    assert read_csv(path) == [{"a": "1.2346", "b": ""}]


def test_ablation_variants_validate_early() -> None:
    shape = MixerShape(dim=16, depth=2, num_heads=2, window=(8, 8), pool_stride=(4, 4))
    variants = ablation_variants(("window",), shape, (8, 16), (4,), {"composition": "stack"})
    assert [v.net_kwargs["window"] for v in variants] == [(8, 8), (16, 16)]
    with pytest.raises(ValueError, match="divisible by pool_stride"):
        ablation_variants(("pool_stride",), shape, (8,), (3,), {})


def test_interrupted_training_stops_the_benchmark_without_a_row(tmp_path: Path, monkeypatch) -> None:
    """SIGINT/SIGTERM during a training run: the benchmark exits with the trainer's code; finished rows are kept in
    rows.partial.csv and the partly trained model is never reported as a result."""
    import atlas_vision.train as train_module

    calls = []

    def fake_training(cfg):
        calls.append(cfg.run.seed)
        if len(calls) == 2:
            return {"interrupted": True, "exit_code": 143}
        return {"val_top1": 50.0, "train_s": 1.0, "epochs": 1, "num_params": 10, "run_dir": cfg.run.out}

    monkeypatch.setattr(train_module, "run_training", fake_training)
    out = tmp_path / "mixers"
    argv = [
        "mixers",
        *TINY,
        "--mixers",
        "window",
        "--tokens",
        "64",
        "--task",
        "fake",
        "--img-size",
        "32",
        "--patch-size",
        "4",
        "--seeds",
        "0,1,2",
        "--out",
        str(out),
    ]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 143 and calls == [0, 1]
    partial = read_csv(out / "rows.partial.csv")
    accuracy = [r for r in partial if r["measure"] == "accuracy"]
    assert [r["seed"] for r in accuracy] == ["0"] and not (out / "mixers.csv").exists()


def test_train_step_measurement_halves_the_batch_on_out_of_memory():
    """An out-of-memory step is retried at half the batch until it fits; the result names the batch that ran."""
    from torch import nn

    from atlas_vision.bench.speed import measure_train_step

    class FitsTwo(nn.Module):  # stands in for a model whose activations fit 2 images
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(3, 4)

        def forward(self, x):
            if x.shape[0] > 2:
                raise torch.OutOfMemoryError(f"out of memory: batch {x.shape[0]}")
            return self.head(x.mean(dim=(2, 3)))

    result = measure_train_step(FitsTwo, (8, 8), 3, 4, 8, torch.device("cpu"), "fp32", 0, 1)
    assert result.status == "ok" and result.batch == 2, result
    assert result.images_per_s > 0

    class NeverFits(FitsTwo):
        def forward(self, x):
            raise torch.OutOfMemoryError("out of memory")

    result = measure_train_step(NeverFits, (8, 8), 3, 4, 4, torch.device("cpu"), "fp32", 0, 1)
    assert result.status == "oom" and result.batch == 0, result
