"""Any image Pillow opens (PNG, JPEG, BMP, WebP, ...) as a one-level slide.

Pillow decodes such files as a whole, so the image is decoded once on the first read and kept in memory
(``width x height x 3`` bytes). Pillow's decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``) is replaced by an
explicit ``max_pixels`` limit (``--max-pixels`` on the command line): larger images are refused with a message
naming the option, and Pillow's global setting is left untouched.
"""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np

from atlas_vision.slide.errors import SlideError
from atlas_vision.slide.mpp_metadata import mpp_from_dpi
from atlas_vision.slide.reader import SlideReader, to_rgb_uint8

DEFAULT_MAX_PIXELS = 2_000_000_000  # 2 gigapixels = 6 GB of RGB in memory


class PillowReader(SlideReader):
    backend = "pillow"

    def __init__(self, path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS):
        from PIL import Image

        path = Path(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                image = Image.open(path)
            except Image.DecompressionBombError:
                image = None
            except (OSError, SyntaxError) as exc:
                raise SlideError(f"{path}: Pillow cannot read this image ({exc})") from exc
        if image is None:  # Pillow refused before we could read the size: re-open without its limit
            image = _open_unlimited(path)
        width, height = image.size
        if width * height > max_pixels:
            image.close()
            raise SlideError(
                f"{path.name}: {width}x{height} = {width * height:,} pixels exceeds max_pixels={max_pixels:,} "
                "(Pillow decodes the whole image into memory); raise the limit with --max-pixels if that fits"
            )
        dpi = image.info.get("dpi")
        mpp = mpp_from_dpi(float(dpi[0]), "inch") if dpi else None
        super().__init__(path, [(width, height)], mpp)
        self._image = image
        self._max_pixels = max_pixels
        self._pixels: np.ndarray | None = None
        self._lock = threading.Lock()

    def _decoded(self) -> np.ndarray:
        with self._lock:
            if self._pixels is None:
                from PIL import Image

                limit = Image.MAX_IMAGE_PIXELS
                try:
                    Image.MAX_IMAGE_PIXELS = None  # our own limit was checked in __init__
                    image = self._image
                    if image.mode not in ("L", "LA", "RGB", "RGBA"):
                        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
                    self._pixels = to_rgb_uint8(np.asarray(image))
                except OSError as exc:
                    raise SlideError(f"{self.path.name}: cannot decode image ({exc})") from exc
                finally:
                    Image.MAX_IMAGE_PIXELS = limit
                self._image.close()
            return self._pixels

    def _read_inside(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        return self._decoded()[y : y + height, x : x + width]

    def close(self) -> None:
        self._image.close()
        self._pixels = None


def _open_unlimited(path: Path):
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None
        return Image.open(path)
    finally:
        Image.MAX_IMAGE_PIXELS = limit
