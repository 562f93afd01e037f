"""Tissue detection on a thumbnail.

Methods (``--tissue``):

* ``saturation`` (default for colour slides): HSV saturation ``S = (max - min) / max`` of each thumbnail pixel in
  0..255; tissue where ``S > max(otsu(S), 20)``. Stained tissue is saturated, glass is grey-white.
* ``grey`` (default for grey slides): luminance ``L``; tissue where ``L < min(otsu(L), 235)`` (darker than glass).
* ``all``: every pixel is tissue (no background skipping).
* a path to a mask image (any size, resized with nearest neighbour to the thumbnail): non-zero = tissue.

The floors (20, 235) stop Otsu from splitting pure background noise when a slide has no tissue. The mask is then
cleaned with a 3x3 opening (removes isolated pixels) followed by a 3x3 dilation (so a region that touches tissue at
its edge is kept).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from atlas_vision.slide.errors import SlideError

TISSUE_METHODS = ("auto", "saturation", "grey", "all")
SATURATION_FLOOR = 20
GREY_CEILING = 235


def otsu_threshold(values: np.ndarray) -> int:
    """Otsu's threshold of uint8 ``values``: the ``t`` maximising the between-class variance of ``<= t`` / ``> t``."""
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 0
    levels = np.arange(256)
    w0 = np.cumsum(hist)
    w1 = total - w0
    mu0 = np.cumsum(hist * levels)
    mean_all = mu0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean_all * w0 - mu0 * total) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = 0
    return int(np.argmax(between))


def _grey(thumb: np.ndarray) -> np.ndarray:
    return (thumb[..., 0] * 0.299 + thumb[..., 1] * 0.587 + thumb[..., 2] * 0.114).round().astype(np.uint8)


def _is_grey(thumb: np.ndarray) -> bool:
    return bool(np.all(thumb[..., 0] == thumb[..., 1]) and np.all(thumb[..., 1] == thumb[..., 2]))


def _morph(mask: np.ndarray, op: str) -> np.ndarray:
    """3x3 binary erosion (``op="min"``) or dilation (``"max"``); outside the image counts as background."""
    padded = np.pad(mask, 1, constant_values=False)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3))
    return windows.all(axis=(2, 3)) if op == "min" else windows.any(axis=(2, 3))


def detect_tissue(thumb: np.ndarray, method: str | Path = "auto") -> tuple[np.ndarray, dict]:
    """``[h, w]`` boolean tissue mask of an RGB thumbnail, and a description (method, threshold) for the outputs."""
    h, w = thumb.shape[:2]
    if isinstance(method, Path) or method not in TISSUE_METHODS:
        return load_mask(Path(method), (w, h)), {"method": "mask", "path": str(method)}
    if method == "all":
        return np.ones((h, w), dtype=bool), {"method": "all"}
    if method == "auto":
        method = "grey" if _is_grey(thumb) else "saturation"
    if method == "saturation":
        top, bottom = thumb.max(axis=2).astype(np.int32), thumb.min(axis=2).astype(np.int32)
        sat = ((top - bottom) * 255 // np.maximum(top, 1)).astype(np.uint8)
        threshold = max(otsu_threshold(sat), SATURATION_FLOOR)
        mask = sat > threshold
    else:
        grey = _grey(thumb)
        threshold = min(otsu_threshold(grey), GREY_CEILING)
        mask = grey < threshold
    mask = _morph(_morph(_morph(mask, "min"), "max"), "max")  # opening, then one dilation
    return mask, {"method": method, "threshold": int(threshold)}


def load_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A user-supplied mask image resized to ``size = (width, height)``: non-zero pixels are tissue."""
    from PIL import Image

    if not path.is_file():
        raise SlideError(
            f"--tissue {str(path)!r} is neither a method ({', '.join(TISSUE_METHODS)}) nor an existing mask image"
        )
    try:
        with Image.open(path) as image:
            mask = image.convert("L").resize(size, Image.Resampling.NEAREST)
    except OSError as exc:
        raise SlideError(f"cannot read tissue mask {path}: {exc}") from exc
    return np.asarray(mask) > 0
