"""Shared helpers for the slide tests (tiny synthetic slides, a reference stitcher); holds no tests itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from atlas_vision.slide import TissueLayout, TissuePiece, write_synthetic_slide
from atlas_vision.slide.model import load_slide_model
from atlas_vision.slide.open import open_slide
from atlas_vision.slide.regions import RegionGrid
from atlas_vision.slide.resolution import select_resolution

TEST_MODEL = "test_atlas"  # strides 8, 16, 32: overlap multiple of 64, step multiple of 32


def small_slide(path: Path, width: int = 1280, height: int = 960, seed: int = 0) -> Path:
    """Two tissue pieces in opposite corners, so most regions are background."""
    pieces = (
        TissuePiece(width * 0.22, height * 0.25, width * 0.12, height * 0.14, 0.3, (0.1, 0.05), (0.0, 1.0)),
        TissuePiece(width * 0.75, height * 0.72, width * 0.14, height * 0.12, 1.1, (0.08, 0.04), (2.0, 0.5)),
    )
    layout = TissueLayout(width, height, pieces)
    write_synthetic_slide(path, width, height, seed=seed, layout=layout, tile_size=256, min_level_side=400)
    return path


def reference_grids(
    path: Path,
    region_size: int,
    overlap: int,
    regions: list[int],
    model: str = TEST_MODEL,
    level: int | None = None,
    num_classes: int | None = None,
) -> list[np.ndarray]:
    """The stage grids computed the plain way: each region read, one direct forward, its owned cells copied."""
    sm = load_slide_model(model, num_classes=num_classes, seed=0)
    with open_slide(path) as reader:
        view = select_resolution(reader, level=level)
        grid = RegionGrid(*view.size, region_size, overlap)
        out = [np.zeros((c, *grid.stage_shape(s)), np.float32) for c, s in zip(sm.channels, sm.strides)]
        for index in regions:
            region = grid.region(index)
            pixels = view.read(region.x, region.y, region.size, region.size)
            with torch.inference_mode():
                maps = sm.model.forward_intermediates(sm.to_input(pixels[None]), intermediates_only=True)
            for grid_out, m, stride in zip(out, maps, sm.strides):
                rows, cols, mrows, mcols = grid.cells(region, stride)
                grid_out[:, rows, cols] = m[0][:, mrows, mcols].numpy()
    return out


def assert_same_features(a: Path, b: Path) -> None:
    """Two ``features.zarr`` folders hold identical arrays and the same regions."""
    from atlas_vision.slide import open_features

    fa, fb = open_features(a), open_features(b)
    assert sorted(map(tuple, fa.attrs["regions_done"])) == sorted(map(tuple, fb.attrs["regions_done"]))
    for x, y in zip(fa.stages + fa.valid + [fa.region_embedding], fb.stages + fb.valid + [fb.region_embedding]):
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(x[...]), np.asarray(y[...]))


def cli_args(slide: Path, out: Path, *extra: str) -> list[str]:
    return [
        "slide",
        "embed",
        str(slide),
        "--out",
        str(out),
        "--model",
        TEST_MODEL,
        "--region-size",
        "192",
        "--overlap",
        "64",
        "--tissue",
        "all",
        "--dtype",
        "float32",
        "--thumbnail-size",
        "256",
        *extra,
    ]
