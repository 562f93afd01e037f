"""Slide readers on every layout tifffile and Pillow write (tiled / stripped, with / without pyramid, SubIFDs /
page chain, OME, SVS-style description, grey / grey+alpha / RGB / RGBA, 8 / 16 bit, planar), OpenSlide on the same
files, level / mpp selection and the bad-input errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from atlas_vision.slide import RegionReadError, SlideError, open_slide, select_resolution
from atlas_vision.slide.reader import to_rgb_uint8
from atlas_vision.slide.thumbnail import read_thumbnail

H, W = 300, 420  # not multiples of the tile or strip size


def _pixels(channels: int, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    high = np.iinfo(dtype).max
    shape = (H, W) if channels == 1 else (H, W, channels)
    return rng.integers(0, high, size=shape, endpoint=True, dtype=dtype)


def _expected(pixels: np.ndarray) -> np.ndarray:
    return to_rgb_uint8(pixels)


def _write(path: Path, levels: list[np.ndarray], how: str, **kw) -> None:
    """Write ``levels`` (level 0 first) as ``how``: "flat", "subifds", "pages" or "ome"."""
    photometric = "minisblack" if levels[0].ndim == 2 else "rgb"
    common = dict(photometric=photometric, compression="zlib", **kw)
    if levels[0].ndim == 3 and levels[0].shape[2] in (2, 4):
        common["extrasamples"] = ["unassalpha"]
        if levels[0].shape[2] == 2:
            common["photometric"] = "minisblack"
    if how == "ome":
        with tifffile.TiffWriter(path, ome=True) as tif:
            meta = {"PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25, "axes": "YXS" if levels[0].ndim == 3 else "YX"}
            tif.write(levels[0], subifds=len(levels) - 1, metadata=meta, **common)
            for lv in levels[1:]:
                tif.write(lv, subfiletype=1, **common)
        return
    with tifffile.TiffWriter(path) as tif:
        res = {"resolution": (1e4 / 0.5, 1e4 / 0.5), "resolutionunit": "CENTIMETER"}
        if how == "subifds":
            tif.write(levels[0], subifds=len(levels) - 1, **res, **common)
        else:
            tif.write(levels[0], metadata=None, **res, **common)
        for lv in levels[1:]:
            tif.write(lv, subfiletype=1, metadata=None, **common)


def _pyramid(pixels: np.ndarray, n: int) -> list[np.ndarray]:
    return [pixels[:: 2**i, :: 2**i].copy() for i in range(n)]


LAYOUTS = [
    # (name, channels, dtype, writer layout, tile, extra)
    ("tiled-rgb-flat", 3, np.uint8, "flat", (64, 64), {}),
    ("stripped-rgb", 3, np.uint8, "flat", None, {"rowsperstrip": 7}),
    ("tiled-rgb-subifds", 3, np.uint8, "subifds", (64, 64), {}),
    ("tiled-rgb-pages", 3, np.uint8, "pages", (64, 64), {}),
    ("stripped-rgb-pages", 3, np.uint8, "pages", None, {"rowsperstrip": 16}),
    ("ome-rgb", 3, np.uint8, "ome", (64, 64), {}),
    ("ome-grey", 1, np.uint8, "ome", (64, 64), {}),
    ("tiled-grey", 1, np.uint8, "pages", (64, 64), {}),
    ("stripped-grey16", 1, np.uint16, "flat", None, {}),
    ("tiled-rgb16", 3, np.uint16, "subifds", (32, 48), {}),
    ("tiled-rgba", 4, np.uint8, "pages", (64, 64), {}),
    ("stripped-grey-alpha", 2, np.uint8, "flat", None, {}),
    ("planar-rgb", 3, np.uint8, "flat", (64, 64), {"planarconfig": "separate"}),
]


@pytest.mark.parametrize("name,channels,dtype,how,tile,extra", LAYOUTS, ids=[layout[0] for layout in LAYOUTS])
def test_tiff_layouts_read_exactly(tmp_path: Path, name, channels, dtype, how, tile, extra) -> None:
    pixels = _pixels(channels, dtype)
    if extra.get("planarconfig") == "separate":
        levels = [np.ascontiguousarray(lv.transpose(2, 0, 1)) for lv in _pyramid(pixels, 2)]  # [S, H, W]
    else:
        levels = _pyramid(pixels, 1 if how == "flat" else 3)
    path = tmp_path / f"{name}.ome.tif" if how == "ome" else tmp_path / f"{name}.tif"
    _write(path, levels if how != "flat" else levels[:1], how, **({"tile": tile} if tile else {}), **extra)
    with open_slide(path) as reader:
        n = 1 if how == "flat" else 3
        assert reader.backend == "tifffile"
        assert reader.level_count == n
        assert reader.level_dimensions[0] == (W, H)
        assert reader.mpp == (0.25 if how == "ome" else 0.5)
        for level in range(n):
            want = _expected(pixels[:: 2**level, :: 2**level])
            lh, lw = want.shape[:2]
            assert reader.level_dimensions[level] == (lw, lh)
            np.testing.assert_array_equal(reader.read_region(level, 0, 0, lw, lh), want)
            # an interior window not aligned to tiles, and one hanging over the top-left and bottom-right corners
            np.testing.assert_array_equal(reader.read_region(level, 13, 7, 50, 33), want[7:40, 13:63])
            over = reader.read_region(level, lw - 20, lh - 10, 40, 30)
            np.testing.assert_array_equal(over[:10, :20], want[-10:, -20:])
            assert (over[10:] == 255).all() and (over[:, 20:] == 255).all()
            corner = reader.read_region(level, -5, -3, 10, 10)
            np.testing.assert_array_equal(corner[3:, 5:], want[:7, :5])
            assert (corner[:3] == 255).all() and (corner[:, :5] == 255).all()


def test_jpeg_tiles_match_tifffile_decode(tmp_path: Path) -> None:
    """Lossy JPEG tiles: the reader returns what tifffile/imagecodecs decode for the whole level."""
    from atlas_vision.slide import write_synthetic_slide

    slide = write_synthetic_slide(tmp_path / "s.tif", 900, 700, seed=2, tile_size=128, min_level_side=300)
    assert slide.level_dimensions == ((900, 700), (450, 350), (225, 175))
    with open_slide(slide.path) as reader, tifffile.TiffFile(slide.path) as tif:
        for level in range(3):
            full = tif.series[0].levels[level].asarray()
            np.testing.assert_array_equal(reader.read_region(level, 31, 17, 150, 120), full[17:137, 31:181])


def test_svs_style_description_mpp(tmp_path: Path) -> None:
    path = tmp_path / "a.svs"
    desc = "Aperio Image Library v12.0.5\n420x300 [0,0 420x300] (64x64) JPEG/RGB Q=70|AppMag = 20|MPP = 0.2520"
    tifffile.imwrite(path, _pixels(3), tile=(64, 64), photometric="rgb", description=desc, metadata=None)
    with open_slide(path) as reader:
        assert reader.mpp == pytest.approx(0.252)
        np.testing.assert_array_equal(reader.read_region(0, 0, 0, W, H), _pixels(3))


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA"])
@pytest.mark.parametrize("fmt", ["png", "tiff", "bmp"])
def test_pillow_written_files(tmp_path: Path, mode: str, fmt: str) -> None:
    if fmt == "bmp" and mode == "LA":
        pytest.skip("BMP has no grey+alpha mode")
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2}[mode]
    pixels = _pixels(channels)
    path = tmp_path / f"img.{fmt}"
    Image.fromarray(pixels, mode=mode).save(path, dpi=(50800, 50800))  # 0.5 µm/px
    with open_slide(path) as reader:
        assert reader.backend == ("tifffile" if fmt == "tiff" else "pillow")
        assert reader.level_dimensions == ((W, H),)
        got = reader.read_region(0, 10, 20, 100, 50)
        if fmt == "bmp" and mode == "RGBA":  # Pillow reads 32-bit BMP back without its alpha
            with Image.open(path) as image:
                pixels = np.asarray(image)
        np.testing.assert_array_equal(got, _expected(pixels)[20:70, 10:110])
        if fmt != "bmp":  # Pillow's BMP writer rounds the resolution
            assert reader.mpp == pytest.approx(0.5, rel=1e-3)


def test_pillow_jpeg_and_software_dpi_is_no_mpp(tmp_path: Path) -> None:
    pixels = _pixels(3)
    path = tmp_path / "img.jpg"
    Image.fromarray(pixels).save(path, dpi=(72, 72), quality=90)
    with open_slide(path) as reader, Image.open(path) as image:
        np.testing.assert_array_equal(reader.read_region(0, 0, 0, W, H), np.asarray(image.convert("RGB")))
        assert reader.mpp is None  # 72 dpi is a software default, not a scanner resolution
        with pytest.raises(SlideError, match="--slide-mpp"):
            select_resolution(reader, mpp=0.5)
        view = select_resolution(reader, mpp=1.0, slide_mpp=0.5)
        assert view.size == (W // 2, H // 2) and view.mpp == pytest.approx(1.0)


def test_pillow_max_pixels_is_explicit(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.fromarray(_pixels(3)).save(path)
    with pytest.raises(SlideError, match="--max-pixels"):
        open_slide(path, max_pixels=1000)
    from PIL import Image as PILImage

    limit = PILImage.MAX_IMAGE_PIXELS
    PILImage.MAX_IMAGE_PIXELS = 1000  # Pillow's own guard would refuse; our explicit limit decides
    try:
        with open_slide(path, max_pixels=10**6) as reader:
            assert reader.read_region(0, 0, 0, 5, 5).shape == (5, 5, 3)
    finally:
        PILImage.MAX_IMAGE_PIXELS = limit
    assert limit == PILImage.MAX_IMAGE_PIXELS


def test_openslide_reads_the_same_pixels(tmp_path: Path) -> None:
    pytest.importorskip("openslide")
    pixels = _pixels(3)
    path = tmp_path / "chain.tif"
    _write(path, _pyramid(pixels, 3), "pages", tile=(64, 64))
    with open_slide(path, backend="openslide") as slide, open_slide(path) as tiff:
        assert slide.backend == "openslide"
        assert slide.level_dimensions == tiff.level_dimensions
        assert slide.mpp == pytest.approx(0.5)
        for level in range(3):
            np.testing.assert_array_equal(slide.read_region(level, 9, 5, 60, 40), tiff.read_region(level, 9, 5, 60, 40))
        over = slide.read_region(1, 200, 140, 30, 30)  # level 1 is 210 x 150
        np.testing.assert_array_equal(over, tiff.read_region(1, 200, 140, 30, 30))


def test_level_and_mpp_selection(tmp_path: Path) -> None:
    path = tmp_path / "p.tif"
    _write(path, _pyramid(_pixels(3), 3), "pages", tile=(64, 64))  # 0.5, 1.0, 2.0 µm/px
    with open_slide(path) as reader:
        assert select_resolution(reader).describe()["level"] == 0
        view = select_resolution(reader, mpp=1.02)  # within 5% of level 1
        assert (view.level, view.factor, view.mpp) == (1, 1.0, 1.0)
        view = select_resolution(reader, mpp=1.5)  # between levels: from level 1, downsampled 1.5x
        assert view.level == 1 and view.factor == pytest.approx(1.5) and view.size == (140, 100)
        assert view.read(0, 0, 20, 10).shape == (10, 20, 3)
        assert select_resolution(reader, level=2).mpp == pytest.approx(2.0)
        with pytest.raises(SlideError, match=r"level 3 out of range.*0\.\.2"):
            select_resolution(reader, level=3)
        with pytest.raises(SlideError, match=r"--mpp 0\.1 out of range.*0\.5"):
            select_resolution(reader, mpp=0.1)
        with pytest.raises(SlideError, match="either --mpp or --level"):
            select_resolution(reader, mpp=1.0, level=1)
        thumb, unreadable = read_thumbnail(reader, 100)
        assert not unreadable.any()
        assert thumb.shape == (71, 100, 3)


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="slide not found"):
        open_slide(tmp_path / "missing.svs")
    odd = tmp_path / "slide.xyz"
    odd.write_bytes(b"nothing")
    with pytest.raises(SlideError, match=r"unsupported slide format '\.xyz'.*tifffile: .*\.svs.*pillow: .*\.png"):
        open_slide(odd)
    fake = tmp_path / "fake.tif"
    fake.write_bytes(b"this is not a tiff")
    with pytest.raises(SlideError, match="not a readable TIFF"):
        open_slide(fake)


def test_corrupt_tile_is_reported_with_its_region(tmp_path: Path) -> None:
    path = tmp_path / "c.tif"
    pixels = _pixels(3)
    tifffile.imwrite(path, pixels, tile=(64, 64), photometric="rgb", compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[0].dataoffsets[8], tif.pages[0].databytecounts[8]  # tile row 1, col 1
    data = bytearray(path.read_bytes())
    data[offset : offset + count] = b"\x00garbage" * (count // 8) + b"\x00" * (count % 8)
    path.write_bytes(bytes(data))
    with open_slide(path) as reader:
        np.testing.assert_array_equal(reader.read_region(0, 0, 0, 64, 64), pixels[:64, :64])  # other tiles fine
        with pytest.raises(RegionReadError, match=r"level 0 region x=70 y=70") as err:
            reader.read_region(0, 70, 70, 10, 10)
        assert err.value.region == (70, 70, 10, 10)
