"""The ``train``, ``eval`` and ``predict`` command lines (in-process ``main(argv)`` calls; the real
``python -m atlas_vision train`` subprocess is exercised by test_train_resume.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_train_support import one_thread, tiny_config  # noqa: F401 (autouse fixture)

from atlas_vision.train import cli_eval, cli_predict, cli_train, run_training


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny run (fake task, 3 classes, 32 x 32) shared by the eval/predict tests."""
    out = tmp_path_factory.mktemp("cli") / "run"
    run_training(tiny_config(out))
    return out


def test_train_help_lists_every_section(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_train.main(["--help"]) == 0
    text = capsys.readouterr().out
    for key in (
        "--data.img_size",
        "--model.kwargs",
        "--optim.global_batch",
        "--schedule.warmup_epochs",
        "--run.resume",
        "--epochs",
    ):
        assert key in text, key


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--optim.lrr", "1"], "did you mean 'optim.lr'"),
        (["--optim.lr", "fast"], "expected float"),
        (["--config", "missing.yaml"], "does not exist"),
        (["positional"], "unexpected argument"),
        (
            ["--model.name", "no_such_model", "--data.task", "fake", "--data.img_size", "32", "--out", "{tmp}"],
            "unknown model 'no_such_model'",
        ),
    ],
)
def test_train_usage_errors_exit_2(
    argv: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path / "run")) for a in argv]
    assert cli_train.main(argv) == 2
    assert fragment in capsys.readouterr().err


def test_unknown_model_leaves_no_run_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default ``runs/<timestamp>`` is chosen only after the model name is known to exist."""
    monkeypatch.chdir(tmp_path)
    assert cli_train.main(["--model.name", "no_such_model", "--data.task", "fake", "--data.img_size", "32"]) == 2
    assert "unknown model 'no_such_model'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_eval_writes_report_and_confusion_matrix(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    assert cli_eval.main(["--checkpoint", str(run_dir), "--out", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "top-1" in text and "top-3" in text  # 3 classes: top-k with k = min(5, classes)
    report = json.loads((out / "eval.json").read_text())
    assert report["count"] == 10 and len(report["per_class_accuracy"]) == 3
    assert 0.0 <= report["top1"] <= report["top5"] <= 100.0
    cm = json.loads((out / "confusion_matrix.json").read_text())
    assert sum(map(sum, cm["confusion"])) == 10 and len(cm["class_names"]) == 3
    assert (out / "confusion_matrix.png").stat().st_size > 1000
    summary = json.loads((run_dir / "summary.json").read_text())
    assert report["top1"] == pytest.approx(summary["best_val_top1"])  # default: the best checkpoint


def test_eval_with_data_override(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "--checkpoint",
        str(run_dir / "checkpoints" / "last"),
        "--data.val_samples",
        "7",
        "--data.img_size",
        "48",
        "40",
        "--json",
        "--out",
        str(tmp_path / "e"),
    ]
    assert cli_eval.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["count"] == 7 and report["data"]["img_size"] == [48, 40]
    assert cli_eval.main(["--checkpoint", str(run_dir), "--data.bogus", "1"]) == 2
    assert "'data.bogus'" in capsys.readouterr().err
    assert cli_eval.main(["--checkpoint", str(run_dir), "--ema"]) == 2
    assert "no EMA weights" in capsys.readouterr().err


def test_predict_large_non_square_image(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    wide = tmp_path / "wide.png"
    Image.fromarray(rng.integers(0, 255, (900, 1500, 3), dtype=np.uint8)).save(wide)  # 1500 x 900 (w x h)
    tall = tmp_path / "tall.jpg"
    Image.fromarray(rng.integers(0, 255, (700, 300, 3), dtype=np.uint8)).save(tall)
    assert cli_predict.main([str(wide), str(tall), "--checkpoint", str(run_dir), "--topk", "2", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{wide} (1500x900 -> 32x32)")
    probs = [float(line.split()[0]) for line in lines[1:3]]
    assert probs[0] >= probs[1] and 0.0 < sum(probs) <= 1.0 + 1e-6
    assert len(lines) == 6

    assert (
        cli_predict.main([str(wide), "--checkpoint", str(run_dir), "--img-size", "40", "64", "--json", "--topk", "9"])
        == 0
    )
    (pred,) = json.loads(capsys.readouterr().out)
    assert pred["original_size"] == [900, 1500] and pred["input_size"] == [40, 64]
    assert len(pred["classes"]) == 3 and abs(sum(pred["probabilities"]) - 1.0) < 1e-5


def test_predict_errors(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    assert cli_predict.main([str(bad), "--checkpoint", str(run_dir)]) == 2
    assert "cannot read image" in capsys.readouterr().err
    assert cli_predict.main([str(bad), "--checkpoint", str(tmp_path)]) == 2
    assert "no checkpoint found" in capsys.readouterr().err


def test_malformed_config_yaml_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lr: 3e-4\nrun: [\n")
    assert cli_train.main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and "not valid YAML" in err


def test_malformed_run_config_yaml_on_resume_and_eval(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    for ckpt in ("last", "best"):
        (copy / "checkpoints" / ckpt / "config.yaml").write_text("data: {task: [\n")
    assert cli_train.main(["--resume", str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.yaml" in err and "not valid YAML" in err
    assert cli_eval.main(["--checkpoint", str(copy), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.yaml" in err and "not valid YAML" in err
