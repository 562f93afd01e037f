"""HR-IN100 builder on a tiny fake ImageNet tree: missing classes, custom lists, symlink and copy modes, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atlas_vision.data.cli import main
from atlas_vision.data.hr_in100 import build_hr_in100, default_class_file, read_class_file

WNIDS = read_class_file()[:3]


def _jpeg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
    Image.fromarray(data).save(path, "JPEG")


@pytest.fixture()
def imagenet(tmp_path: Path) -> Path:
    """ImageNet-like tree: 3 classes of the list + 1 other, 1-2 tiny JPEGs per class and split."""
    root = tmp_path / "imagenet"
    for i, wnid in enumerate(WNIDS + ["n09999999"]):
        for split in ("train", "val"):
            for k in range(1 + i % 2):
                _jpeg(root / split / wnid / f"{wnid}_{split}_{k}.JPEG", seed=i * 10 + k)
    return root


@pytest.fixture()
def class_file(tmp_path: Path) -> Path:
    path = tmp_path / "classes.txt"
    path.write_text("# three classes\n" + "\n".join(WNIDS) + "\n\n")
    return path


def test_packaged_class_list() -> None:
    wnids = read_class_file()
    assert len(wnids) == 100 == len(set(wnids)) and wnids[0] == "n02869837"
    assert default_class_file().is_file()


def test_missing_classes_are_listed(imagenet: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="97 missing") as info:
        build_hr_in100(imagenet, tmp_path / "out")
    assert "n02107142" in str(info.value)  # the 4th class of the list, which the fake tree lacks


def test_symlink_mode_idempotent(imagenet: Path, tmp_path: Path, class_file: Path) -> None:
    out = tmp_path / "out"
    report = build_hr_in100(imagenet, out, classes=read_class_file(class_file))
    assert report.splits["train"].classes == 3 and report.splits["train"].images == 4  # 1 + 2 + 1
    assert report.splits["train"].created == 3
    for split in ("train", "val"):
        assert sorted(p.name for p in (out / split).iterdir()) == sorted(WNIDS)
        assert all((out / split / w).is_symlink() for w in WNIDS)
    assert "n09999999" not in {p.name for p in (out / "train").iterdir()}
    again = build_hr_in100(imagenet, out, classes=read_class_file(class_file))
    assert again.splits["train"].created == 0 and again.splits["val"].unchanged == 3
    # the result is a valid folder data set
    from atlas_vision.data import DataConfig, build_datasets

    data = build_datasets(DataConfig(task="folder", root=str(out), img_size=(32, 48)), seed=0)
    assert data.num_classes == 3 and len(data.train) == 4 and data.train[0][0].shape == (3, 32, 48)


def test_copy_mode_idempotent(imagenet: Path, tmp_path: Path, class_file: Path) -> None:
    out = tmp_path / "copied"
    report = build_hr_in100(imagenet, out, mode="copy", classes=read_class_file(class_file))
    assert report.splits["val"].created == 4
    files = sorted((out / "val").rglob("*.JPEG"))
    assert len(files) == 4 and not any(p.is_symlink() for p in files)
    assert build_hr_in100(imagenet, out, mode="copy", classes=read_class_file(class_file)).splits["val"].created == 0
    with pytest.raises(FileExistsError, match="symlink"):
        build_hr_in100(imagenet, out, mode="symlink", classes=read_class_file(class_file))


def test_cli(imagenet: Path, tmp_path: Path, class_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli-out"
    assert main(["hr-in100", "--imagenet", str(imagenet), "--out", str(out), "--classes", str(class_file)]) == 0
    assert "train: 3 classes, 4 images" in capsys.readouterr().out
    argv = ["hr-in100", "--imagenet", str(imagenet), "--out", str(out), "--mode", "copy", "--classes", str(class_file)]
    assert main(argv) == 2  # symlinks already there
    assert main(["hr-in100", "--imagenet", str(imagenet), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "n02107142" in err
    assert main(["hr-in100", "--imagenet", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_flat_val_and_bad_class_file(imagenet: Path, tmp_path: Path) -> None:
    _jpeg(imagenet / "val" / "ILSVRC2012_val_00000001.JPEG", seed=1)
    with pytest.raises(ValueError, match="class folders"):
        build_hr_in100(imagenet, tmp_path / "out", classes=WNIDS)
    bad = tmp_path / "bad.txt"
    bad.write_text("n01440764\ncat\n")
    with pytest.raises(ValueError, match="bad.txt:2"):
        read_class_file(bad)
