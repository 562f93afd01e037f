"""The reader interface every slide backend implements, and the pixel conversion they share.

A reader exposes the pyramid geometry (``level_dimensions`` as ``(width, height)`` per level, level 0 the finest,
``level_downsamples``), the level-0 microns per pixel (``mpp``, ``None`` when the file has none) and
``read_region(level, x, y, width, height)``, which returns ``[height, width, 3]`` uint8 RGB for a rectangle given
**in that level's pixels** (unlike OpenSlide, whose location is in level-0 pixels). Parts of the rectangle outside the
level are white (255), like the glass around tissue. Only the tiles that intersect the rectangle are decoded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from atlas_vision.slide.errors import SlideError

WHITE = 255

if TYPE_CHECKING:
    from typing_extensions import Self


class SlideReader(ABC):
    """Lazy, read-only access to a (possibly pyramidal) slide image; use as a context manager or call ``close``."""

    backend: str = "?"

    def __init__(self, path: Path, level_dimensions: list[tuple[int, int]], mpp: float | None):
        if not level_dimensions:
            raise SlideError(f"{path}: no image levels found")
        self.path = Path(path)
        self.level_dimensions: tuple[tuple[int, int], ...] = tuple((int(w), int(h)) for w, h in level_dimensions)
        self.mpp = None if mpp is None or not np.isfinite(mpp) or mpp <= 0 else float(mpp)

    @property
    def level_count(self) -> int:
        return len(self.level_dimensions)

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 ``(width, height)``."""
        return self.level_dimensions[0]

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        """Level-0 pixels per level pixel (mean of the x and y ratios, as OpenSlide reports it)."""
        w0, h0 = self.level_dimensions[0]
        return tuple((w0 / w + h0 / h) / 2 for w, h in self.level_dimensions)

    def check_level(self, level: int) -> None:
        if not isinstance(level, int) or not 0 <= level < self.level_count:
            raise SlideError(
                f"level {level!r} out of range for {self.path.name}: valid levels 0..{self.level_count - 1}"
            )

    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """``[height, width, 3]`` uint8 RGB of the level-``level`` rectangle at ``(x, y)`` (may extend outside)."""
        self.check_level(level)
        if width <= 0 or height <= 0:
            raise SlideError(f"region size must be positive, got {width}x{height}")
        out = np.full((height, width, 3), WHITE, dtype=np.uint8)
        lw, lh = self.level_dimensions[level]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + width, lw), min(y + height, lh)
        if x1 > x0 and y1 > y0:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = self._read_inside(level, x0, y0, x1 - x0, y1 - y0)
        return out

    @abstractmethod
    def _read_inside(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """``[height, width, 3]`` uint8 of a rectangle that lies inside the level."""

    def close(self) -> None:
        """Release the file (readers holding open handles override this)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> dict:
        """Geometry and metadata as plain JSON types (``atlas-vision slide info``)."""
        return {
            "path": str(self.path),
            "backend": self.backend,
            "dimensions": list(self.dimensions),
            "level_count": self.level_count,
            "level_dimensions": [list(d) for d in self.level_dimensions],
            "level_downsamples": [round(d, 4) for d in self.level_downsamples],
            "mpp": self.mpp,
        }


def to_rgb_uint8(pixels: np.ndarray) -> np.ndarray:
    """``[H, W]`` grey, ``[H, W, 2]`` grey+alpha, ``[H, W, 3]`` RGB or ``[H, W, 4]`` RGBA of any integer or float
    dtype -> ``[H, W, 3]`` uint8 RGB. Alpha is composited over white; integers are scaled by their dtype's maximum,
    floats are taken as 0..1."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise SlideError(
            f"unsupported pixel layout {tuple(pixels.shape)}: expected grey, grey+alpha, RGB or RGBA samples"
        )
    if pixels.dtype == np.uint8:
        values = pixels
    elif np.issubdtype(pixels.dtype, np.integer):
        values = (pixels.astype(np.float32) * (255.0 / np.iinfo(pixels.dtype).max)).round().astype(np.uint8)
    elif np.issubdtype(pixels.dtype, np.floating) or pixels.dtype == np.bool_:
        values = (np.clip(pixels.astype(np.float32), 0, 1) * 255).round().astype(np.uint8)
    else:
        raise SlideError(f"unsupported pixel dtype {pixels.dtype}")
    channels = values.shape[2]
    if channels in (2, 4):  # composite over white: out = c * a + 255 * (1 - a)
        colour, alpha = values[:, :, :-1].astype(np.uint16), values[:, :, -1:].astype(np.uint16)
        values = ((colour * alpha + WHITE * (255 - alpha) + 127) // 255).astype(np.uint8)
    if values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    return np.ascontiguousarray(values)
