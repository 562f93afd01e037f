"""OpenSlide formats (NDPI, MRXS, SCN, VMS/VMU, BIF, SVSlide, Philips TIFF, ...) through ``openslide-python`` with
the ``openslide-bin`` wheel (``pip install 'atlas-vision[openslide]'``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from atlas_vision.slide.errors import RegionReadError, SlideError
from atlas_vision.slide.reader import SlideReader, to_rgb_uint8

INSTALL_HINT = "pip install 'atlas-vision[openslide]' (openslide-python + openslide-bin)"


def import_openslide():
    try:
        import openslide
    except ImportError as exc:  # also raised when openslide-python finds no OpenSlide library
        raise SlideError(f"this format needs OpenSlide, which is not installed: {INSTALL_HINT} ({exc})") from exc
    return openslide


class OpenSlideReader(SlideReader):
    backend = "openslide"

    def __init__(self, path: str | Path):
        openslide = import_openslide()
        path = Path(path)
        try:
            self._slide = openslide.OpenSlide(str(path))
        except (openslide.OpenSlideError, openslide.OpenSlideUnsupportedFormatError) as exc:
            raise SlideError(f"{path}: OpenSlide cannot open this file ({exc})") from exc
        mpp = self._slide.properties.get(openslide.PROPERTY_NAME_MPP_X)
        super().__init__(path, list(self._slide.level_dimensions), float(mpp) if mpp else None)

    def _read_inside(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        downsample = self._slide.level_downsamples[level]
        location = (round(x * downsample), round(y * downsample))  # OpenSlide wants level-0 coordinates
        try:
            rgba = self._slide.read_region(location, level, (width, height))
        except Exception as exc:
            raise RegionReadError(
                f"{self.path.name}: cannot read level {level} region x={x} y={y} {width}x{height} ({exc})",
                (x, y, width, height),
                level,
            ) from exc
        return to_rgb_uint8(np.asarray(rgba))  # transparent (outside the scanned area) -> white

    def close(self) -> None:
        self._slide.close()
