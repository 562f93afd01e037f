"""Image folders: non-square timm transforms, corrupt files (strict / non-strict), clear errors."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from atlas_vision.data import DataConfig, UnreadableImageError, build_datasets, collate_skip_none


def _write_image(path: Path, size: tuple[int, int], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    data = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(data[:, :, 0] if channels == 1 else data, mode).save(path)


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """root/{train,val}/{cat,dog}: images of mixed sizes and formats, plus one corrupt JPEG in train/cat."""
    root = tmp_path / "tree"
    _write_image(root / "train/cat/a.png", (40, 30))
    _write_image(root / "train/cat/b.jpg", (25, 60), "L")
    (root / "train/cat/broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    _write_image(root / "train/dog/c.jpeg", (64, 64))
    _write_image(root / "train/dog/nested/d.PNG", (33, 17), "RGBA")
    (root / "train/dog/notes.txt").write_text("not an image")
    _write_image(root / "val/cat/e.png", (50, 40))
    _write_image(root / "val/dog/f.bmp", (20, 20))
    return root


def test_non_strict_skips_and_counts(tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = DataConfig(task="folder", root=str(tree), img_size=(24, 40), auto_augment="rand-m9-mstd0.5-inc1", reprob=0.25)
    data = build_datasets(cfg, seed=0)
    assert data.num_classes == 2 and data.class_names == ["cat", "dog"] and data.in_chans == 3
    assert len(data.train) == 5 and len(data.val) == 2  # notes.txt ignored, nested image found
    with caplog.at_level(logging.WARNING):
        batches = list(DataLoader(data.train, batch_size=2, collate_fn=collate_skip_none))
        list(DataLoader(data.train, batch_size=5, collate_fn=collate_skip_none))  # second pass: no second warning
    assert sum(n for _, _, n in batches) == 1
    assert sum(len(labels) for _, labels, _ in batches) == 4
    assert all(images.shape[1:] == (3, 24, 40) for images, _, _ in batches if len(images))
    warnings = [r for r in caplog.records if "broken.jpg" in r.getMessage()]
    assert len(warnings) == 1
    x, y = data.val[0]
    assert x.shape == (3, 24, 40) and y == 0


def test_workers_and_collate(tree: Path) -> None:
    data = build_datasets(DataConfig(task="folder", root=str(tree), img_size=(16, 16)), seed=0)
    loader = DataLoader(data.train, batch_size=5, num_workers=1, collate_fn=collate_skip_none)
    ((images, labels, skipped),) = list(loader)
    assert skipped == 1 and images.shape == (4, 3, 16, 16) and labels.dtype == torch.long


def test_strict_raises_with_the_path(tree: Path) -> None:
    data = build_datasets(DataConfig(task="folder", root=str(tree), img_size=(16, 16), strict=True), seed=0)
    index = next(i for i, (path, _) in enumerate(data.train.samples) if path.name == "broken.jpg")
    with pytest.raises(UnreadableImageError, match="broken.jpg"):
        data.train[index]


def test_all_none_batch() -> None:
    images, labels, skipped = collate_skip_none([None, None])
    assert skipped == 2 and images.numel() == 0 and labels.numel() == 0


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_datasets(DataConfig(task="folder", root=str(tmp_path / "nowhere")), seed=0)


def test_missing_val(tree: Path) -> None:
    import shutil

    shutil.rmtree(tree / "val")
    with pytest.raises(FileNotFoundError, match="val"):
        build_datasets(DataConfig(task="folder", root=str(tree)), seed=0)


def test_no_classes(tmp_path: Path) -> None:
    (tmp_path / "r/train").mkdir(parents=True)
    (tmp_path / "r/val").mkdir(parents=True)
    with pytest.raises(ValueError, match="no class sub-folders"):
        build_datasets(DataConfig(task="folder", root=str(tmp_path / "r")), seed=0)


def test_empty_class(tree: Path) -> None:
    (tree / "train/emu").mkdir()
    (tree / "val/emu").mkdir()
    _write_image(tree / "val/emu/x.png", (8, 8))
    with pytest.raises(ValueError, match="emu"):
        build_datasets(DataConfig(task="folder", root=str(tree)), seed=0)


def test_val_classes_must_match(tree: Path) -> None:
    _write_image(tree / "val/emu/x.png", (8, 8))
    with pytest.raises(ValueError, match="emu"):
        build_datasets(DataConfig(task="folder", root=str(tree)), seed=0)
