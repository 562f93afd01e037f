"""predict: the decompression-bomb limit stays on (``--max-pixels``), one bad file does not drop the good ones, and a
1-channel model trained on a 16-bit folder from the config reads 16-bit files scaled, not clipped."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_train_support import one_thread, tiny_config  # noqa: F401  (fixture: one intra-op thread)

from atlas_vision.train import cli_predict, run_training
from atlas_vision.train.evaluate import load_checkpoint
from atlas_vision.train.predict import ImageTooLargeError, PredictionError, load_image, predict_images


def _forge_png_size(src: Path, dst: Path, width: int, height: int) -> None:
    """Copy of PNG ``src`` whose IHDR declares ``width x height`` (a decompression bomb's header; CRC fixed)."""
    data = bytearray(src.read_bytes())
    ihdr = 8 + 8  # signature, then length + type of the first chunk
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    dst.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def grey16_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-channel model trained (1 epoch) on a folder of 16-bit grey PNGs, with data.in_chans = 1."""
    root = tmp_path_factory.mktemp("grey16")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls, level in (("dark", 8000), ("bright", 50000)):
            folder = root / "tree" / split / cls
            folder.mkdir(parents=True)
            for i in range(3):
                noise = rng.integers(-500, 500, (40, 36))
                Image.fromarray((level + noise).astype(np.uint16)).save(folder / f"{i}.png")
    cfg = tiny_config(
        root / "run",
        data={"task": "folder", "root": str(root / "tree"), "in_chans": 1, "crop": "whole"},
        optim={"batch_size": 4},
    )
    summary = run_training(cfg)
    return Path(summary["run_dir"])


def test_grey16_model_is_one_channel_and_predicts_16bit_files(grey16_run: Path, tmp_path: Path) -> None:
    loaded = load_checkpoint(grey16_run, "cpu")
    assert loaded.meta["in_chans"] == 1 and loaded.model.in_chans == 1
    image = tmp_path / "g.png"
    Image.fromarray(np.full((50, 60), 30000, np.uint16)).save(image)
    (pred,) = predict_images(loaded, [str(image)], topk=2)
    assert pred.original_size == (50, 60) and sorted(pred.classes) == ["bright", "dark"]
    transform_input, _ = load_image(image, lambda im: im, (32, 32), in_chans=1)
    assert abs(np.asarray(transform_input).mean() - 30000 * 255 / 65535) < 1  # scaled, not clipped to 255


def test_bomb_is_refused_by_default_with_the_option_to_raise_the_limit(grey16_run: Path, tmp_path: Path) -> None:
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(small)
    bomb = tmp_path / "bomb.png"
    _forge_png_size(small, bomb, 20000, 20000)
    with pytest.raises(ImageTooLargeError, match=r"20000 x 20000 = 400,000,000 pixels.*--max-pixels 400000000"):
        load_image(bomb, lambda im: im, (32, 32), in_chans=1)
    loaded = load_checkpoint(grey16_run, "cpu")
    with pytest.raises(ImageTooLargeError):
        load_image(small, lambda im: im, (32, 32), in_chans=1, max_pixels=100)
    (refused,) = predict_images(loaded, [str(small)], max_pixels=100)
    assert isinstance(refused, PredictionError) and "--max-pixels 256" in refused.error
    (ok,) = predict_images(loaded, [str(small)], max_pixels=0)  # 0 = no limit
    assert not isinstance(ok, PredictionError)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # Pillow's global limit restored


def test_one_bad_file_does_not_drop_the_good_ones(
    grey16_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(np.full((20, 20), 40000, np.uint16)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    missing = tmp_path / "missing.png"
    args = [str(good), str(bad), str(missing), str(good), "--checkpoint", str(grey16_run), "--device", "cpu"]
    assert cli_predict.main(args) == 2
    out, err = capsys.readouterr()
    assert out.count(f"{good} (20x20 -> 32x32)") == 2
    assert f"cannot read image {str(bad)!r}" in err and str(missing) in err
    assert "2 of 4 image(s) could not be read" in err
    assert cli_predict.main([*args, "--json"]) == 2
    results = json.loads(capsys.readouterr().out)
    assert [("error" in r) for r in results] == [False, True, True, False]
    assert cli_predict.main([str(good), "--checkpoint", str(grey16_run), "--device", "cpu"]) == 0
