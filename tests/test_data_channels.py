"""Image folders: true-range scaling (16-bit, float), data.in_chans (1, 3, N), channel conversion only as configured,
data.crop, the one-line transform description, and keys that do nothing for the task."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from atlas_vision.data import (
    ChannelMismatchError,
    DataConfig,
    UnreadableImageError,
    build_datasets,
    describe_transforms,
    read_image,
)


def _tree(root: Path, files: dict[str, object]) -> Path:
    """root/{train,val}/{a,b}/<name>: every class gets every file (``files`` maps name -> array or writer)."""
    for split in ("train", "val"):
        for cls in ("a", "b"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for name, content in files.items():
                path = folder / name
                if path.suffix == ".tif":
                    tifffile.imwrite(path, content, photometric="minisblack")
                else:
                    Image.fromarray(content).save(path)
    return root


def _pixels(x_CHW: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Undo the normalisation: pixel values in [0, 1]."""
    return x_CHW * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]


@pytest.mark.parametrize("in_chans", [1, 3])
def test_16bit_grey_is_scaled_not_clipped(tmp_path: Path, in_chans: int) -> None:
    value = 30000  # 0.458 of the 16-bit range; clipping through convert("RGB") made it 1.0 (white)
    root = _tree(tmp_path / "t", {"g16.png": np.full((20, 30), value, np.uint16)})
    data = build_datasets(DataConfig(task="folder", root=str(root), img_size=(16, 24), in_chans=in_chans), seed=0)
    x, _ = data.val[0]
    assert x.shape == (in_chans, 16, 24)
    assert torch.allclose(_pixels(x, data.mean, data.std), torch.full_like(x, value / 65535), atol=1 / 255)


def test_16bit_rgb_tiff_and_float_tiff(tmp_path: Path) -> None:
    rgb16 = np.zeros((12, 10, 3), np.uint16)
    rgb16[..., 0], rgb16[..., 1], rgb16[..., 2] = 0, 32768, 65535
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, photometric="rgb")
    image = read_image(tmp_path / "rgb16.tif", 3)
    assert image.mode == "RGB" and np.asarray(image)[0, 0].tolist() == [0, 128, 255]

    grey = np.linspace(0, 1, 12 * 10, dtype=np.float32).reshape(12, 10)
    tifffile.imwrite(tmp_path / "f.tif", grey)
    image = read_image(tmp_path / "f.tif", 1)
    assert np.abs(np.asarray(image) / 255.0 - grey).max() <= 0.5 / 255 + 1e-6


def test_float_outside_unit_range_is_clipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from atlas_vision.data import decode

    decode._warned.discard("float-range")
    tifffile.imwrite(tmp_path / "big.tif", np.full((4, 5, 5), 7.5, np.float32), photometric="minisblack")
    with caplog.at_level(logging.WARNING):
        x = read_image(tmp_path / "big.tif", 4)
    assert torch.equal(x, torch.ones(4, 5, 5))
    assert any("clipped" in r.getMessage() and "big.tif" in r.getMessage() for r in caplog.records)


def test_multipage_tiff_trains_with_n_channels(tmp_path: Path) -> None:
    pages = np.stack([np.full((20, 18), 1000 * (i + 1), np.uint16) for i in range(5)])  # 5 pages, distinct values
    root = _tree(tmp_path / "t", {"ms.tif": pages})
    cfg = DataConfig(task="folder", root=str(root), img_size=(16, 16), in_chans=5, crop="whole", hflip=0.0)
    data = build_datasets(cfg, seed=0)
    assert data.in_chans == 5 and data.mean == (0.5,) * 5
    for x, _ in (data.train[0], data.val[0]):
        assert x.shape == (5, 16, 16)
        expected = torch.tensor([1000.0 * (i + 1) / 65535 for i in range(5)])[:, None, None].expand(5, 16, 16)
        assert torch.allclose(_pixels(x, data.mean, data.std), expected, atol=1e-5)
    rrc = build_datasets(DataConfig(task="folder", root=str(root), img_size=(8, 12), in_chans=5, reprob=0.5), 0)
    assert rrc.train[1][0].shape == (5, 8, 12)


def test_channels_last_tiff(tmp_path: Path) -> None:
    hwc = np.stack([np.full((6, 7), v, np.uint8) for v in (0, 85, 170, 255)], axis=-1)  # Y X S
    tifffile.imwrite(tmp_path / "hwc.tif", hwc, photometric="minisblack", planarconfig="contig")
    x = read_image(tmp_path / "hwc.tif", 4)
    assert x.shape == (4, 6, 7) and torch.allclose(x[:, 0, 0], torch.tensor([0.0, 1 / 3, 2 / 3, 1.0]))


def test_conversion_only_when_allowed(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", {"grey.png": np.full((10, 10), 7, np.uint8)})
    grey = root / "train/a/grey.png"
    assert read_image(grey, 3).mode == "RGB"  # default: documented grey -> RGB
    with pytest.raises(ChannelMismatchError, match=r"grey\.png.*1 channel.*data\.in_chans=3.*convert_channels"):
        read_image(grey, 3, convert_channels=False)
    cfg = DataConfig(task="folder", root=str(root), img_size=(8, 8), convert_channels=False, strict=True)
    with pytest.raises(UnreadableImageError, match=r"grey\.png"):
        build_datasets(cfg, seed=0).train[0]
    lenient = DataConfig(task="folder", root=str(root), img_size=(8, 8), convert_channels=False)
    assert build_datasets(lenient, seed=0).train[0] is None  # skipped (collate_skip_none counts it)
    with pytest.raises(ChannelMismatchError, match="5 channel"):
        tifffile.imwrite(tmp_path / "five.tif", np.zeros((5, 8, 8), np.uint8), photometric="minisblack")
        read_image(tmp_path / "five.tif", 3)


def test_alpha_palette_and_cmyk(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 10
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert np.asarray(read_image(tmp_path / "rgba.png", 3))[0, 0].tolist() == [200, 0, 0]  # alpha dropped
    assert torch.allclose(read_image(tmp_path / "rgba.png", 4)[:, 0, 0], torch.tensor([200, 0, 0, 10]) / 255.0)
    Image.fromarray(np.full((4, 4, 3), (0, 255, 0), np.uint8)).convert("P").save(tmp_path / "p.png")
    assert np.asarray(read_image(tmp_path / "p.png", 3))[0, 0].tolist() == [0, 255, 0]  # through the palette
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    red = np.asarray(read_image(tmp_path / "c.jpg", 3))[0, 0]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_whole_crop_keeps_the_whole_image(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    root = _tree(tmp_path / "t", {"x.png": rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)})
    whole = DataConfig(task="folder", root=str(root), img_size=(12, 20), crop="whole", hflip=0.0)
    data = build_datasets(whole, seed=0)
    torch.manual_seed(0)
    assert torch.allclose(data.train[0][0], data.val[0][0], atol=1e-6)  # train = resize of the whole image
    rrc = build_datasets(DataConfig(task="folder", root=str(root), img_size=(12, 20), hflip=0.0), seed=0)
    torch.manual_seed(0)
    assert not torch.allclose(rrc.train[0][0], rrc.val[0][0], atol=1e-3)  # timm's RandomResizedCrop cuts


def test_describe_transforms_in_one_line() -> None:
    rrc = describe_transforms(DataConfig(task="folder", root="x", img_size=(64, 96), reprob=0.25))
    assert "RandomResizedCrop to 64x96 (area 0.08-1" in rrc and "data.crop=whole" in rrc
    assert "horizontal flip p=0.5" in rrc and "random erasing p=0.25" in rrc and "\n" not in rrc
    whole = describe_transforms(DataConfig(task="folder", root="x", crop="whole", hflip=0.0))
    assert whole.startswith("train: whole image resized to 128x128") and "flip" not in whole
    assert "no augmentation" in describe_transforms(DataConfig())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "folder", "root": "r", "train_samples": 10}, r"^train_samples = 10 does nothing for task='folder'"),
        ({"task": "folder", "root": "r", "val_samples": 5}, r"^val_samples = 5 does nothing"),
        ({"task": "pathfinder", "in_chans": 3}, r"^in_chans = 3 does not match task='pathfinder'"),
        ({"task": "longrange", "crop": "whole"}, r"^crop does nothing for task='longrange'"),
        ({"task": "folder", "root": "r", "crop": "center"}, r"^crop must be one of"),
        ({"task": "folder", "root": "r", "in_chans": 0}, r"^in_chans must be an int >= 1"),
        ({"task": "folder", "root": "r", "in_chans": 4, "auto_augment": "rand-m9"}, r"^in_chans = 4: data\.auto_augm"),
        ({"task": "folder", "root": "r", "in_chans": 4, "interpolation": "lanczos"}, r"^interpolation = 'lanczos'"),
        ({"task": "folder", "root": "r", "convert_channels": 1}, r"^convert_channels must be true or false"),
    ],
)
def test_config_errors_name_the_key(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DataConfig(**kwargs)


def test_task_channels_defaults() -> None:
    assert DataConfig(task="pathfinder").channels == 1 and DataConfig().channels == 3
    assert DataConfig(task="pathfinder", in_chans=1).channels == 1
    assert DataConfig(task="folder", root="r", in_chans=7).channels == 7
