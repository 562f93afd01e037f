"""Checkpoints: every crash state is found, damaged files give one-line errors, failed writes leave nothing behind."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from atlas_vision.train import checkpoint as ckpt
from atlas_vision.train.checkpoint import (
    CheckpointError,
    CheckpointWriteError,
    copy_checkpoint,
    find_checkpoint,
    load_state,
    load_weights,
    read_meta,
    save_checkpoint,
)

META = {
    "model": {"name": "tiny", "kwargs": {}},
    "num_classes": 3,
    "in_chans": 3,
    "class_names": ["a", "b", "c"],
    "img_size": [8, 8],
    "mean": [0.5] * 3,
    "std": [0.5] * 3,
    "interpolation": "bicubic",
}


class Tiny(nn.Module):
    def __init__(self, num_classes: int = 3, in_chans: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, 4, 3)
        self.head = nn.Linear(4, num_classes)
        self.pretrained_cfg = {"classifier": "head", "first_conv": "conv"}


def _save(directory: Path, step: int, model: nn.Module | None = None) -> None:
    save_checkpoint(directory, model or Tiny(), {"step": torch.tensor(step)}, {**META, "step": step}, "a: 1\n")


def _step(directory: Path) -> int:
    return read_meta(directory)["step"]


@pytest.fixture()
def last(tmp_path: Path) -> Path:
    return tmp_path / "run" / "checkpoints" / "last"


def test_save_and_find(last: Path) -> None:
    _save(last, 1)
    _save(last, 2)
    assert find_checkpoint(last.parent.parent) == last and _step(last) == 2
    assert sorted(p.name for p in last.parent.iterdir()) == ["last"]  # no .old / .tmp left


@pytest.mark.parametrize(
    "state",
    [
        "killed_after_first_rename",  # .last.old complete, .last.tmp complete, no last
        "killed_before_any_rename",  # last complete, .last.tmp complete
        "killed_while_writing_tmp",  # last complete, .last.tmp partial
        "only_complete_tmp",  # the double-crash state: only .last.tmp, complete
    ],
)
def test_every_crash_state_leaves_a_usable_checkpoint(last: Path, state: str) -> None:
    _save(last, 1)
    tmp, old = last.with_name(".last.tmp"), last.with_name(".last.old")
    shutil.copytree(last, tmp)
    if state == "killed_after_first_rename":
        os.replace(last, old)
    elif state == "killed_while_writing_tmp":
        (tmp / "meta.json").unlink()
        with (tmp / "model.safetensors").open("r+b") as f:
            f.truncate(20)
    elif state == "only_complete_tmp":
        os.replace(last, old)
        shutil.rmtree(old)
    found = find_checkpoint(last.parent.parent)
    assert found in (last, old, tmp) and _step(found) == 1
    assert ckpt.checkpoint_problem(found) is None


def test_double_crash_hole_is_closed(last: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a resume from .last.old (no `last`), the next save must not delete .last.old before `last` exists."""
    _save(last, 1)
    old = last.with_name(".last.old")
    os.replace(last, old)  # state after a kill between the two renames
    real_replace = os.replace

    def killed_at_publish(src, dst):  # the process dies right before the tmp -> last rename
        if Path(src).name == ".last.tmp":
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", killed_at_publish)
    with pytest.raises(KeyboardInterrupt):
        _save(last, 2)
    monkeypatch.undo()
    assert old.is_dir() and ckpt.checkpoint_problem(old) is None  # the good copy survived the second crash
    assert _step(find_checkpoint(last.parent.parent)) == 1
    _save(last, 3)
    assert _step(find_checkpoint(last.parent.parent)) == 3 and not old.exists()


def test_files_and_directories_are_fsynced(last: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = ckpt.fsync_path
    monkeypatch.setattr(ckpt, "fsync_path", lambda p: (synced.append(Path(p).name), real(p)))
    _save(last, 1)
    for name in ("model.safetensors", "state.pt", "config.yaml", "meta.json", ".last.tmp", "checkpoints"):
        assert name in synced, name
    assert synced.index("config.yaml") < len(synced) - synced[::-1].index("meta.json")  # data before meta


@pytest.mark.parametrize("fail_in", ["save", "copy"])
def test_full_disk_leaves_no_tmp_and_raises_a_clear_oserror(
    last: Path, fail_in: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _save(last, 1)
    best = last.with_name("best")

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if fail_in == "save":
        monkeypatch.setattr(torch, "save", full_disk)
        with pytest.raises(CheckpointWriteError, match=r"could not write checkpoint .*last.*No space left") as info:
            _save(last, 2)
    else:
        monkeypatch.setattr(ckpt.shutil, "copy2", full_disk)
        with pytest.raises(CheckpointWriteError, match=r"could not write checkpoint .*best.*No space left") as info:
            copy_checkpoint(last, best)
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in last.parent.iterdir()) == ["last"]  # no .last.tmp / .best.tmp
    assert _step(last) == 1


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_damaged_safetensors_names_the_file(last: Path, damage: str) -> None:
    _save(last, 1)
    weights = last / "model.safetensors"
    if damage == "empty":
        weights.write_bytes(b"")
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:-7])
    else:
        weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(CheckpointError, match=r"model\.safetensors") as info:
        load_weights(Tiny(), last)
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*--which"):
        find_checkpoint(last)


def test_invalid_meta_json(last: Path) -> None:
    _save(last, 1)
    (last / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"meta\.json is not valid JSON"):
        read_meta(last)
    (last / "meta.json").write_text(json.dumps({"model": {"name": "x", "kwargs": {}}}))
    with pytest.raises(CheckpointError, match=r"meta\.json lacks the key\(s\) \['num_classes'"):
        read_meta(last)


def test_size_mismatch_names_key_shapes_and_option(last: Path) -> None:
    _save(last, 1, Tiny(num_classes=10))
    with pytest.raises(CheckpointError) as info:
        load_weights(Tiny(num_classes=3), last)
    message = str(info.value)
    assert "'head.weight'" in message and "(10, 4)" in message and "(3, 4)" in message
    assert "num_classes=10" in message
    with pytest.raises(CheckpointError, match=r"'conv\.weight'.*data\.in_chans 3"):
        load_weights(Tiny(num_classes=10, in_chans=1), last)
    other = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match="another architecture"):
        load_weights(other, last)
    load_weights(Tiny(num_classes=10), last)  # the matching model still loads


def test_code_executing_state_is_refused_with_the_reason(last: Path) -> None:
    _save(last, 1)

    class Evil:
        def __reduce__(self):
            return (print, ("this would run",))

    torch.save({"evil": Evil()}, last / "state.pt")
    with pytest.raises(CheckpointError, match="would run code") as info:
        load_state(last)
    assert "weights_only=False" not in str(info.value)


def test_truncated_state_is_an_incomplete_checkpoint(last: Path) -> None:
    _save(last, 1)
    state = last / "state.pt"
    state.write_bytes(state.read_bytes()[:50])
    with pytest.raises(CheckpointError, match=r"state\.pt' is truncated"):
        load_state(last)
    assert ckpt.checkpoint_problem(last) is not None
