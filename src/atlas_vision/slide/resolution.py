"""The working resolution of a run: a pyramid level, or a target microns per pixel read from the nearest finer level.

``select_resolution`` returns a :class:`SlideView`: the slide as one image in *target pixels* (the pixel grid at the
chosen mpp or level) with ``read(x, y, width, height)``. With ``--level`` (or an mpp within 5% of a level's) pixels
come straight from that level; otherwise from the coarsest level finer than the target, area-downsampled with
Pillow's box filter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from atlas_vision.slide.errors import SlideError
from atlas_vision.slide.reader import SlideReader

MPP_TOLERANCE = 0.05  # a level within 5% of the requested mpp is used as is
MIN_SIDE = 16  # a target image smaller than this (in pixels) is refused


@dataclass
class SlideView:
    """The slide at the working resolution.

    Attributes:
        level: the pyramid level pixels are read from.
        factor: level pixels per target pixel (1.0: no resampling; > 1: area-downsampled).
        downsample: level-0 pixels per target pixel.
        mpp: microns per target pixel (``None`` if the slide has no mpp and none was given).
        size: ``(width, height)`` of the target image.
    """

    reader: SlideReader
    level: int
    factor: float
    downsample: float
    mpp: float | None

    @property
    def size(self) -> tuple[int, int]:
        lw, lh = self.reader.level_dimensions[self.level]
        if self.factor == 1.0:
            return lw, lh
        return max(1, int(lw / self.factor)), max(1, int(lh / self.factor))

    def read(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        """``[height, width, 3]`` uint8 RGB of the target-pixel rectangle at ``(x, y)`` (white outside the slide)."""
        if self.factor == 1.0:
            return self.reader.read_region(self.level, x, y, width, height)
        from PIL import Image

        f = self.factor
        lx, ly = math.floor(x * f), math.floor(y * f)
        lw, lh = max(1, math.ceil((x + width) * f) - lx), max(1, math.ceil((y + height) * f) - ly)
        block = self.reader.read_region(self.level, lx, ly, lw, lh)
        box = (x * f - lx, y * f - ly, x * f - lx + width * f, y * f - ly + height * f)
        return np.asarray(Image.fromarray(block).resize((width, height), Image.Resampling.BOX, box=box))

    def describe(self) -> dict:
        return {
            "level": self.level,
            "factor": self.factor,
            "downsample": self.downsample,
            "mpp": self.mpp,
            "size": list(self.size),
        }


def select_resolution(
    reader: SlideReader, mpp: float | None = None, level: int | None = None, slide_mpp: float | None = None
) -> SlideView:
    """The working resolution for ``--mpp`` or ``--level`` (neither: level 0).

    Args:
        mpp: target microns per pixel.
        level: a pyramid level (exclusive with ``mpp``).
        slide_mpp: level-0 microns per pixel for a file without that metadata (overrides the file's).

    Raises:
        SlideError: both given, a level or mpp out of range, or ``mpp`` for a slide without mpp metadata.
    """
    if mpp is not None and level is not None:
        raise SlideError("give either --mpp or --level, not both")
    if slide_mpp is not None and not slide_mpp > 0:
        raise SlideError(f"--slide-mpp must be > 0, got {slide_mpp}")
    base_mpp = slide_mpp if slide_mpp is not None else reader.mpp
    downsamples = reader.level_downsamples
    if mpp is None:
        level = 0 if level is None else level
        reader.check_level(level)
        ds = downsamples[level]
        return SlideView(reader, level, 1.0, ds, None if base_mpp is None else base_mpp * ds)
    if not mpp > 0:
        raise SlideError(f"--mpp must be > 0, got {mpp}")
    if base_mpp is None:
        raise SlideError(
            f"{reader.path.name} has no microns-per-pixel metadata, so --mpp {mpp} cannot be resolved; pass the "
            "scanner's level-0 resolution with --slide-mpp <µm/px>, or pick a pyramid level with --level "
            f"(0..{reader.level_count - 1})"
        )
    target_ds = mpp / base_mpp
    w0, h0 = reader.dimensions
    coarsest = base_mpp * max(w0, h0) / MIN_SIDE
    if target_ds < 1 - MPP_TOLERANCE or mpp > coarsest:
        raise SlideError(
            f"--mpp {mpp} out of range for {reader.path.name}: valid {base_mpp:.4g} (level 0) to {coarsest:.4g} µm/px "
            f"(levels: {', '.join(f'{base_mpp * d:.4g}' for d in downsamples)})"
        )
    candidates = [i for i, d in enumerate(downsamples) if d <= target_ds * (1 + MPP_TOLERANCE)]
    level = max(candidates, key=lambda i: downsamples[i])
    ratio = target_ds / downsamples[level]
    factor = 1.0 if abs(ratio - 1) <= MPP_TOLERANCE else ratio
    return SlideView(reader, level, factor, downsamples[level] * factor, base_mpp * downsamples[level] * factor)
