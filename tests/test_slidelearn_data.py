"""Slide data sets: a folder of feature grids + labels CSV; every bad row or missing grid is an error naming it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from slidelearn_support import write_grid

from atlas_vision.data import DataConfig, build_datasets
from atlas_vision.slidelearn.features_source import features_path

FEATURES = 5


def add_slide(root: Path, slide_id: str, h: int, w: int, channels: int = FEATURES, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    valid = rng.random((h, w)) < 0.6
    write_grid(features_path(root, slide_id), [(rng.normal(size=(channels, h, w)), valid)])


def make_root(tmp_path: Path, csv: str, sizes: dict[str, tuple[int, int]] | None = None) -> Path:
    root = tmp_path / "slides"
    root.mkdir(parents=True)
    for i, line in enumerate(csv.strip().splitlines()[1:]):
        slide_id = line.split(",")[0].strip()
        if slide_id:
            add_slide(root, slide_id, *(sizes or {}).get(slide_id, (6, 8)), seed=i)
    (root / "labels.csv").write_text(csv.strip() + "\n")
    return root


def config(root: Path, **extra) -> DataConfig:
    return DataConfig(task="slide_features", root=str(root), img_size=(8, 10), num_workers=0, **extra)


def test_splits_items_and_metadata(tmp_path: Path) -> None:
    csv = "slide_id,label,split\na,tumor,train\nb,normal,train\nc,tumor,val\nd,normal,val\ne,tumor,train\n"
    root = make_root(tmp_path, csv, sizes={"b": (8, 10), "c": (3, 4)})
    data = build_datasets(config(root), seed=0)
    assert (len(data.train), len(data.val)) == (3, 2)
    assert data.class_names == ["normal", "tumor"] and data.num_classes == 2
    assert data.in_chans == FEATURES + 1
    grid, label = data.val[0]  # slide c: 3x4 grid padded to 8x10
    assert grid.shape == (FEATURES + 1, 8, 10) and grid.dtype == torch.float32 and label == 1
    assert grid[-1, 3:].sum() == 0 and grid[-1, :, 4:].sum() == 0  # padding has mask 0
    assert (grid[:FEATURES][:, grid[-1] == 0] == 0).all()  # and no features


def test_stratified_split_without_split_column(tmp_path: Path) -> None:
    rows = "".join(f"s{i},{'ab'[i % 2]}\n" for i in range(20))
    root = make_root(tmp_path, "slide_id,label\n" + rows)
    data = build_datasets(config(root, val_fraction=0.3), seed=3)
    assert (len(data.train), len(data.val)) == (14, 6)
    val_labels = [data.val[i][1] for i in range(len(data.val))]
    assert sorted(val_labels) == [0, 0, 0, 1, 1, 1]
    again = build_datasets(config(root, val_fraction=0.3), seed=3)
    assert [e.slide_id for e in again.val.entries] == [e.slide_id for e in data.val.entries]


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        ("slide,label\na,x\n", r"line 1: the header must have the columns slide_id,label.*missing \['slide_id'\]"),
        ("slide_id,label\na,x\n,y\n", r"labels.csv, line 3: empty slide_id"),
        ("slide_id,label\na,x\nb,\n", r"line 3: slide 'b' has an empty label"),
        ("slide_id,label\na,x\nb,y\na,y\n", r"line 4: slide_id 'a' is listed twice \(first on line 2\)"),
        (
            "slide_id,label,split\na,x,train\nb,x,test\n",
            r"line 3: slide 'b' has split 'test'; valid splits: train, val",
        ),
        ("slide_id,label,split\na,x,train\nb,x,\n", r"line 3: slide 'b' has no split while 1 other rows"),
        ("slide_id,label\na,tumor\nb,Tumor\nc,tumor\n", r"line 3: label 'Tumor' differs only in case from 'tumor'"),
        (
            "slide_id,label,split\na,tumor,train\nb,normal,train\nc,tumour,val\n",
            r"line 4: label 'tumour' of val slide 'c' never occurs in the train split.*did you mean 'tumor'",
        ),
        ("slide_id,label\na,x,extra\n", r"line 2: more fields than the header's 2"),
    ],
)
def test_bad_csv_rows_name_the_line(tmp_path: Path, csv: str, message: str) -> None:
    root = tmp_path / "slides"
    root.mkdir()
    (root / "labels.csv").write_text(csv)
    with pytest.raises(ValueError, match=message):
        build_datasets(config(root), seed=0)


def test_missing_grid_names_the_row(tmp_path: Path) -> None:
    root = make_root(tmp_path, "slide_id,label,split\na,x,train\nb,y,train\nc,x,val\n")
    import shutil

    shutil.rmtree(root / "b")
    with pytest.raises(
        FileNotFoundError, match=r"slide 'b' \(.*labels.csv, line 3\): .*b/features.zarr does not exist"
    ):
        build_datasets(config(root), seed=0)


def test_grid_too_large_and_channel_mismatch_name_the_row(tmp_path: Path) -> None:
    csv = "slide_id,label,split\na,x,train\nb,y,train\nc,x,val\n"
    root = make_root(tmp_path, csv, sizes={"b": (9, 4)})
    with pytest.raises(ValueError, match=r"slide 'b' .*line 3\): stage0 grid 9x4 does not fit data.img_size 8x10"):
        build_datasets(config(root), seed=0)
    root2 = make_root(tmp_path / "second", csv)
    add_slide(root2, "c", 6, 8, channels=FEATURES + 2)
    with pytest.raises(ValueError, match=r"slide 'c' .*line 4\): stage0 has 7 feature channels but slide 'a'"):
        build_datasets(config(root2), seed=0)


def test_missing_stage_and_missing_csv(tmp_path: Path) -> None:
    root = make_root(tmp_path, "slide_id,label,split\na,x,train\nb,x,val\n")
    with pytest.raises(
        ValueError, match=r"slide 'a' .*line 2\): .*has stages 0..0; data.feature_stage=3 is out of range"
    ):
        build_datasets(config(root, feature_stage=3), seed=0)
    with pytest.raises(FileNotFoundError, match="labels CSV .*nope.csv does not exist"):
        build_datasets(config(root, labels_csv=str(tmp_path / "nope.csv")), seed=0)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="root must be set for task='slide_features'"):
        DataConfig(task="slide_features")
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\)"):
        DataConfig(task="slide_features", root="x", val_fraction=1.0)
    with pytest.raises(ValueError, match="feature_stage must be an int >= 0"):
        DataConfig(task="slide_features", root="x", feature_stage=-1)
