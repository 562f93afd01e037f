"""build_datasets for every task, DataLoader workers, the cache, and the data CLI (samples, speed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from atlas_vision.data import DataConfig, build_datasets, build_eval_transform, collate_skip_none
from atlas_vision.data.cli import main


@pytest.mark.parametrize(
    ("task", "size", "chans", "classes"),
    [("longrange", (96, 160), 3, 2), ("pathfinder", (32, 32), 1, 2), ("fake", (20, 36), 3, 10)],
)
def test_build_procedural(task: str, size: tuple[int, int], chans: int, classes: int) -> None:
    cfg = DataConfig(task=task, img_size=size, train_samples=8, val_samples=4)
    data = build_datasets(cfg, seed=3)
    assert (len(data.train), len(data.val), data.num_classes, data.in_chans) == (8, 4, classes, chans)
    assert len(data.class_names) == classes and len(data.mean) == len(data.std) == chans
    x, y = data.train[0]
    assert x.shape == (chans, *size) and x.dtype == torch.float32 and 0 <= y < classes
    again = build_datasets(cfg, seed=3)
    assert torch.equal(again.val[2][0], data.val[2][0])
    assert not torch.equal(build_datasets(cfg, seed=4).val[2][0], data.val[2][0])


def test_workers_give_the_same_samples() -> None:
    data = build_datasets(DataConfig(img_size=(64, 96), train_samples=6, val_samples=2), seed=0)
    loader = DataLoader(data.train, batch_size=3, num_workers=2, collate_fn=collate_skip_none)
    images = torch.cat([batch[0] for batch in loader])
    assert torch.equal(images, torch.stack([data.train[i][0] for i in range(6)]))


def test_cache_matches_on_the_fly(tmp_path: Path) -> None:
    cfg = DataConfig(task="pathfinder", img_size=(32, 32), train_samples=5, val_samples=3, cache_dir=str(tmp_path))
    cached = build_datasets(cfg, seed=1)
    direct = build_datasets(DataConfig(task="pathfinder", img_size=(32, 32), train_samples=5, val_samples=3), seed=1)
    assert len(list(tmp_path.glob("*.npy"))) == 4  # images + labels per split
    for i in range(5):
        assert torch.equal(cached.train[i][0], direct.train[i][0]) and cached.train[i][1] == direct.train[i][1]
    reopened = build_datasets(cfg, seed=1)  # reads the files, builds nothing
    assert torch.equal(reopened.val[2][0], direct.val[2][0])
    loader = DataLoader(reopened.train, batch_size=5, num_workers=1, collate_fn=collate_skip_none)
    assert next(iter(loader))[0].shape == (5, 1, 32, 32)


def test_eval_transform_matches_procedural_normalisation(tmp_path: Path) -> None:
    """A sample PNG run through the eval transform gives back the tensor the data set yields."""
    data = build_datasets(DataConfig(task="pathfinder", img_size=(64, 64), train_samples=1, val_samples=1), seed=0)
    assert (
        main(["samples", "--task", "pathfinder", "--img-size", "64", "64", "--out", str(tmp_path), "--count", "1"]) == 0
    )
    (png,) = tmp_path.glob("*.png")
    tf = build_eval_transform((64, 64), "bicubic", data.mean, data.std, in_chans=data.in_chans)
    x = tf(Image.open(png))
    assert x.shape == (1, 64, 64)
    assert torch.allclose(x, data.val[0][0], atol=1e-5)


def test_cli_samples_and_speed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["samples", "--task", "longrange", "--img-size", "64", "80", "--out", str(tmp_path), "--count", "2"]
    assert main(argv) == 0
    pngs = sorted(tmp_path.glob("longrange-64x80-val*.png"))
    assert len(pngs) == 2 and Image.open(pngs[0]).size == (80, 64)
    assert main(["speed", "--task", "longrange", "--img-size", "64", "64", "--count", "3"]) == 0
    assert "ms/image" in capsys.readouterr().out
    assert main(["samples", "--task", "pathfinder", "--img-size", "48", "48", "--out", str(tmp_path)]) == 2
    assert "img_size" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")  # bad input exits 2 above; a write that fails exits 1
    assert (
        main(["samples", "--task", "longrange", "--img-size", "64", "64", "--out", str(tmp_path / "a_file" / "d")]) == 1
    )
    assert "a_file" in capsys.readouterr().err
