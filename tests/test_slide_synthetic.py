"""Synthetic slides: deterministic, pyramidal, mpp metadata, painter hook consistent across levels; tissue
detection recovers the painted layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from atlas_vision.slide import TissueLayout, disc_painter, open_slide, write_synthetic_slide
from atlas_vision.slide.thumbnail import read_thumbnail
from atlas_vision.slide.tissue import detect_tissue, otsu_threshold


def test_deterministic_pyramid_with_mpp(tmp_path: Path) -> None:
    a = write_synthetic_slide(tmp_path / "a.tif", 1500, 1100, seed=4, min_level_side=200)
    b = write_synthetic_slide(tmp_path / "b.tif", 1500, 1100, seed=4, min_level_side=200)
    c = write_synthetic_slide(tmp_path / "c.tif", 1500, 1100, seed=5, min_level_side=200)
    assert a.level_dimensions == ((1500, 1100), (750, 550), (375, 275), (187, 137))
    with open_slide(a.path) as ra, open_slide(b.path) as rb, open_slide(c.path) as rc:
        assert ra.level_count == 4 and ra.mpp == pytest.approx(0.5)
        assert ra.level_downsamples[1] == pytest.approx(2.0)
        np.testing.assert_array_equal(ra.read_region(0, 0, 0, 1500, 1100), rb.read_region(0, 0, 0, 1500, 1100))
        assert not np.array_equal(ra.read_region(2, 0, 0, 375, 275), rc.read_region(2, 0, 0, 375, 275))


def test_painter_hook_paints_every_level_in_level0_coordinates(tmp_path: Path) -> None:
    layout = TissueLayout.random(1024, 768, seed=1, num_pieces=4)
    far = max(layout.pieces, key=lambda p: p.cx + p.cy)  # e.g. a marker in a chosen tissue piece
    assert layout.contains(np.array(far.cx), np.array(far.cy))
    slide = write_synthetic_slide(
        tmp_path / "m.tif",
        1024,
        768,
        layout=layout,
        painters=[disc_painter(far.cx, far.cy, 40, (0, 255, 0))],
        min_level_side=256,
    )
    with open_slide(slide.path) as reader:
        for level, ds in enumerate(reader.level_downsamples):
            x, y = int(far.cx / ds), int(far.cy / ds)
            centre = reader.read_region(level, x - 2, y - 2, 4, 4).astype(int)
            assert (np.abs(centre - [0, 255, 0]) < 40).all(), (level, centre[0, 0])  # JPEG-lossy green
            outside = reader.read_region(level, int((far.cx + 60) / ds), y, 2, 2).astype(int)
            assert not (np.abs(outside - [0, 255, 0]) < 40).all()


def test_tissue_detection_recovers_layout(tmp_path: Path) -> None:
    slide = write_synthetic_slide(tmp_path / "t.tif", 2048, 1536, seed=3, min_level_side=512)
    with open_slide(slide.path) as reader:
        thumb, _ = read_thumbnail(reader, 256)
    mask, info = detect_tissue(thumb)
    assert info["method"] == "saturation"
    h, w = mask.shape
    truth = slide.layout.tile_mask(0, 0, (h, w), 2048 / w)
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.85, iou
    grey_mask, grey_info = detect_tissue(np.repeat(thumb.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2))
    assert grey_info["method"] == "grey" and ((grey_mask & truth).sum() / (grey_mask | truth).sum()) > 0.7


def test_blank_slide_has_no_tissue() -> None:
    rng = np.random.default_rng(0)
    blank = np.clip(243 + rng.normal(0, 2, (200, 300, 3)), 0, 255).astype(np.uint8)  # glass with noise
    mask, _ = detect_tissue(blank)
    assert not mask.any()


def test_otsu_threshold_splits_two_modes() -> None:
    values = np.concatenate([np.full(500, 40), np.full(300, 200)]).astype(np.uint8)
    t = otsu_threshold(values)
    assert 40 <= t < 200


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tile_size"):
        write_synthetic_slide(tmp_path / "x.tif", 256, 256, tile_size=100)
    with pytest.raises(ValueError, match="at least 64x64"):
        TissueLayout.random(10, 500)
    with pytest.raises(ValueError, match="layout is for"):
        write_synthetic_slide(tmp_path / "x.tif", 256, 256, layout=TissueLayout.random(512, 256))
