"""Bad input and file-system faults of `atlas-vision train` / `eval` (issue 15): each ends in one clear line with
exit code 2, and nothing a user made is lost or left half-written."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_train_support import one_thread, tiny_config, tiny_tree, write_yaml  # noqa: F401 (autouse fixture)

from atlas_vision.train import cli_eval, cli_train, run_training
from atlas_vision.train.progress import EpochProgress, format_epoch
from atlas_vision.train.rundir import default_run_dir


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rel") / "run"
    run_training(tiny_config(out, schedule={"epochs": 2}))
    return out


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _tree(root: Path, classes: tuple[str, ...], n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in classes:
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")
    return root


# ----------------------------------------------------------------------------------------------- resume


def test_resume_with_fewer_epochs_than_done_is_refused_and_touches_nothing(
    two_epoch_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(two_epoch_run, tmp_path)
    before = _snapshot(run)
    assert cli_train.main(["--resume", str(run), "--epochs", "1"]) == 2
    line = _one_error_line(capsys)
    assert "schedule.epochs" in line and "already trained 2 epochs" in line and "--epochs 2" in line
    assert _snapshot(run) == before


def test_resume_of_another_class_count_or_model_names_key_and_values(
    two_epoch_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(two_epoch_run, tmp_path)
    assert cli_train.main(["--resume", str(run), "--epochs", "3", "--data.fake_classes", "5"]) == 2
    line = _one_error_line(capsys)
    assert "num_classes = 3" in line and "gives 5" in line and "config.yaml" in line
    assert cli_train.main(["--resume", str(run), "--epochs", "3", "--model.name", "resnet10t"]) == 2
    line = _one_error_line(capsys)
    assert "'model.name'" in line and "'test_atlas'" in line and "--model.name test_atlas" in line


def test_eval_of_weights_that_do_not_fit_names_the_key_and_both_shapes(
    two_epoch_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _copy(two_epoch_run, tmp_path)
    meta_path = run / "checkpoints" / "best" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["num_classes"], meta["class_names"] = 5, [f"c{i}" for i in range(5)]
    meta_path.write_text(json.dumps(meta))
    assert cli_eval.main(["--checkpoint", str(run), "--out", str(tmp_path / "e")]) == 2
    line = _one_error_line(capsys)
    assert "'head.weight'" in line and "(3, 32)" in line and "(5, 32)" in line and "num_classes=3" in line, line


# ----------------------------------------------------------------------------------------------- data


def test_one_class_data_set_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _tree(tmp_path / "tree", ("only",))
    cfg = write_yaml(tmp_path / "c.yaml", tiny_tree(tmp_path / "run", data={"task": "folder", "root": str(root)}))
    assert cli_train.main(["--config", str(cfg)]) == 2
    assert "has 1 class (only)" in _one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_strict_bad_image_is_one_line_and_leaves_no_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _tree(tmp_path / "tree", ("a", "b"))
    bad = root / "train" / "a" / "zz_broken.png"
    bad.write_bytes(b"not a png")
    for workers in (0, 1):
        out = tmp_path / f"run{workers}"
        tree = tiny_tree(out, data={"task": "folder", "root": str(root), "strict": True, "num_workers": workers})
        cfg = write_yaml(tmp_path / "c.yaml", tree)
        assert cli_train.main(["--config", str(cfg), "--optim.batch_size", "9"]) == 2
        line = _one_error_line(capsys)
        assert str(bad) in line and "cannot read image" in line, line
        assert not out.exists(), f"empty run directory left behind: {list(out.rglob('*'))}"


def test_data_in_chans_1_trains_and_evaluates_a_grey_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--data.in_chans 1` on RGB folder images: converted to grey, a 1-channel model, eval of its checkpoint."""
    root = _tree(tmp_path / "tree", ("a", "b"))
    out = tmp_path / "run"
    cfg = write_yaml(tmp_path / "c.yaml", tiny_tree(out, data={"task": "folder", "root": str(root)}))
    assert cli_train.main(["--config", str(cfg), "--data.in_chans", "1"]) == 0
    meta = json.loads((out / "checkpoints" / "last" / "meta.json").read_text())
    assert meta["in_chans"] == 1 and len(meta["mean"]) == 1
    # eval rebuilds a 1-channel model from meta.json and loads the weights strictly: they are 1-channel weights
    assert cli_eval.main(["--checkpoint", str(out), "--out", ""]) == 0
    assert "top-1" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------- --out faults


def test_out_that_is_a_regular_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file"
    target.write_text("mine")
    cfg = write_yaml(tmp_path / "c.yaml", tiny_tree(target))
    assert cli_train.main(["--config", str(cfg)]) == 2
    assert "is not a directory" in _one_error_line(capsys)
    assert target.read_text() == "mine"


def test_out_on_a_read_only_file_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)  # root ignores chmod, so simulate EROFS
    cfg = write_yaml(tmp_path / "c.yaml", tiny_tree(tmp_path / "ro" / "run"))
    assert cli_train.main(["--config", str(cfg)]) == 2
    line = _one_error_line(capsys)
    assert "Read-only file system" in line and "run.out" in line and str(tmp_path / "ro" / "run") in line


def test_full_disk_while_writing_config_leaves_no_run_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = Path.write_text

    def full(self: Path, *args: object, **kwargs: object) -> int:
        if self.name == "config.yaml" and "run" in self.parts:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    cfg = write_yaml(tmp_path / "c.yaml", tiny_tree(tmp_path / "run"))
    assert cli_train.main(["--config", str(cfg)]) == 2
    assert "No space left on device" in _one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_full_disk_during_best_copy_leaves_no_tmp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from atlas_vision.train import checkpoint

    real = shutil.copy2

    def full(src: object, dst: object, *args: object, **kwargs: object) -> object:
        if ".best.tmp" in str(dst) and str(src).endswith(".pt"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(checkpoint.shutil, "copy2", full)
    out = tmp_path / "run"
    cfg = write_yaml(tmp_path / "c.yaml", tiny_tree(out))
    assert cli_train.main(["--config", str(cfg)]) == 2
    line = _one_error_line(capsys)
    assert "No space left on device" in line and "checkpoints/best" in line and "--resume" in line
    assert not list((out / "checkpoints").glob(".*")), list((out / "checkpoints").iterdir())
    assert (out / "checkpoints" / "last" / "model.safetensors").is_file()


# ----------------------------------------------------------------------------------------------- one run per dir


def test_a_run_directory_in_use_is_refused_and_untouched(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "metrics.jsonl").write_text('{"epoch": 1, "step": 2}\n')
    fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT)  # another training process holding the lock
    os.write(fd, b"4242\n")
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        cfg = write_yaml(tmp_path / "c.yaml", tiny_tree(out))
        assert cli_train.main(["--config", str(cfg)]) == 2
        line = _one_error_line(capsys)
        assert "in use by another training process (pid 4242)" in line
        assert (out / "metrics.jsonl").read_text() == '{"epoch": 1, "step": 2}\n'
    finally:
        os.close(fd)
    run_training(tiny_config(out))  # released: the directory can be used again
    assert json.loads((out / "summary.json").read_text())["steps"] == 2


@pytest.mark.slow  # two CLI processes: ~75 s on the shared 2-core CPU (the simulated lock above is the fast check)
def test_two_processes_into_one_directory(tmp_path: Path) -> None:
    """A second `train --out RUN` started while the first runs is refused; the first goes on (stopped by SIGTERM
    here, with a checkpoint) and its metrics.jsonl is intact."""
    import signal

    from test_train_support import launch

    out = tmp_path / "run"
    cfg = write_yaml(tmp_path / "c.yaml", tiny_tree(out, schedule={"epochs": 100}))
    first = launch(["train", "--config", str(cfg)], cwd=tmp_path)
    try:
        while not (out / "checkpoints" / "last").exists():
            assert first.poll() is None, first.stdout.read()
        second = launch(["train", "--config", str(cfg)], cwd=tmp_path)
        text = second.communicate(timeout=240)[0]
        assert second.returncode == 2 and "in use by another training process" in text, text
        assert first.poll() is None, "the first run ended before the second was refused"
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=240) == 143, first.stdout.read()
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, len(epochs) + 1)) and epochs


def test_default_run_dirs_of_the_same_second_differ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("time.strftime", lambda fmt: "20261201-120000")
    first, second = default_run_dir(""), default_run_dir("")
    assert first != second and first.is_dir() and second.is_dir()
    assert second.name == "20261201-120000-2"


# ----------------------------------------------------------------------------------------------- progress output


def test_progress_lines_without_a_terminal(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 1000, 4))
    monkeypatch.setattr("time.monotonic", lambda: float(next(clock)))
    progress = EpochProgress(False, 512, "epoch 1/3", 0, True, log_every_s=10.0, later_images=1024)
    with caplog.at_level(logging.INFO, logger="atlas_vision.train"):
        for step in range(1, 9):
            progress.update(64, step, 0.5, 1e-3, images_per_s=32.0)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines  # every 10 s of a clock advancing 4 s per update: at 12 s and 24 s
    assert lines[0].startswith("epoch 1/3 step 3  192/512 img") and "32.0 img/s" in lines[0]
    assert lines[0].endswith("ETA 0m42s")  # (512 - 192 + 1024) images / 32 img/s


def test_train_prints_progress_lines_when_not_a_terminal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="atlas_vision.train"):
        run_training(tiny_config(tmp_path / "run", run={"log_every_s": 1e-9}))
    lines = [r.getMessage() for r in caplog.records if " img/s  ETA " in r.getMessage()]
    assert len(lines) == 2 and "step 2" in lines[-1], lines


def test_progress_bar_counts_are_integers(capsys: pytest.CaptureFixture[str]) -> None:
    bar = EpochProgress(True, 512, "epoch 1/1", 0, True)
    bar.update(8, 1, 0.5, 1e-3, 10.0)
    bar._bar.refresh()  # tqdm redraws at most every 0.1 s on its own
    bar.close()
    err = capsys.readouterr().err
    assert "8/512" in err and "0.00" not in err and "8.00" not in err, err


def test_final_line_prints_a_zero_loss_as_zero() -> None:
    from atlas_vision.train.progress import format_done

    summary = {"wall_s": 1.0, "val_top1": 100.0, "best_val_top1": 100.0, "best_epoch": 1, "train_loss": 0.0}
    assert "train_loss 0.0000" in format_done(summary, "runs/x")
    assert "train_loss n/a" in format_done(dict(summary, train_loss=None), "runs/x")


def test_top5_is_named_top5_everywhere_with_its_k(two_epoch_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """3 classes: val_top5 is top-3; the epoch line, summary, metrics and eval all say so under the name top5."""
    records = [json.loads(line) for line in (two_epoch_run / "metrics.jsonl").read_text().splitlines()]
    assert all(r["topk"] == 3 for r in records)
    assert json.loads((two_epoch_run / "summary.json").read_text())["topk"] == 3
    assert "val_top5" in format_epoch(dict(records[-1], epoch_s=1.0), 2)
    assert "(top-3: 3 classes)" in format_epoch(dict(records[-1], epoch_s=1.0), 2)
    assert cli_eval.main(["--checkpoint", str(two_epoch_run), "--out", ""]) == 0
    out = capsys.readouterr().out
    assert "top-5 " in out and "(top-3: 3 classes)" in out


def test_sigterm_to_the_process_group_stops_with_a_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`timeout`/a scheduler send SIGTERM to every process: the DataLoader workers die and PyTorch raises
    'DataLoader worker ... is killed by signal' inside forward/backward; the run still stops at its last update with
    a checkpoint and exit code 143 (simulated: the signal arrives, then the worker error, in the second micro-step)."""
    import signal

    from atlas_vision.train import loop

    real, calls = loop._micro_step, []

    def dying_workers(*args: object, **kwargs: object) -> int:
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
            raise RuntimeError("DataLoader worker (pid 1) is killed by signal: Terminated.")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "_micro_step", dying_workers)
    summary = run_training(tiny_config(tmp_path / "run", optim={"batch_size": 4}))  # 4 updates per epoch
    assert summary["interrupted"] and summary["exit_code"] == 143 and summary["steps"] == 2
    meta = json.loads((tmp_path / "run" / "checkpoints" / "last" / "meta.json").read_text())
    assert (meta["update_step"], meta["batch_in_epoch"]) == (2, 2)


def test_resume_of_a_run_whose_checkpoints_are_damaged_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    for name in ("last", "best"):
        ckpt = run / "checkpoints" / name
        ckpt.mkdir(parents=True)
        (ckpt / "meta.json").write_text("{not json")
        (ckpt / "model.safetensors").write_bytes(b"")
    assert cli_train.main(["--resume", str(run), "--epochs", "3"]) == 2
    line = _one_error_line(capsys)
    assert "checkpoint" in line and str(run) in line, line


@pytest.mark.parametrize("fast_bf16", ["AVX512-BF16 instructions, measured", None])
def test_auto_precision_on_cpu_names_the_fast_bf16_unit_it_found(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, fast_bf16: str | None
) -> None:
    from atlas_vision.train import setup

    monkeypatch.setattr(setup, "cpu_fast_bf16", lambda: fast_bf16)
    with caplog.at_level(logging.INFO, logger="atlas_vision.train"):
        run_training(tiny_config(tmp_path / "run", schedule={"epochs": 1}))
    hints = [r.getMessage() for r in caplog.records if "run.precision auto: fp32 on CPU" in r.getMessage()]
    assert hints == (
        []
        if fast_bf16 is None
        else [f"run.precision auto: fp32 on CPU; this CPU has {fast_bf16} (docs/benchmarks.md section 8)"]
    )
