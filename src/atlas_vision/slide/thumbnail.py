"""A low-resolution RGB overview of a slide, read block by block from the coarsest level that is large enough
(memory: the thumbnail plus one block, also for single-level slides).

A block that cannot be decoded (corrupt tile) is re-read in ``RETRY`` px pieces; pieces that still fail are left
white and flagged in the returned ``unreadable`` mask, so the caller can still plan (and report) those regions."""

from __future__ import annotations

import math

import numpy as np

from atlas_vision.slide.errors import RegionReadError
from atlas_vision.slide.reader import WHITE, SlideReader

BLOCK = 2048  # level pixels per block side
RETRY = 256


def read_thumbnail(reader: SlideReader, max_side: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """``[h, w, 3]`` uint8 with ``max(h, w) == min(max_side, level-0 longer side)`` and the slide's aspect ratio,
    and the ``[h, w]`` boolean mask of thumbnail pixels that could not be read."""
    from PIL import Image

    if max_side < 16:
        raise ValueError(f"thumbnail max_side must be >= 16, got {max_side}")
    w0, h0 = reader.dimensions
    scale = min(1.0, max_side / max(w0, h0))
    tw, th = max(1, round(w0 * scale)), max(1, round(h0 * scale))
    # coarsest level still at least as fine as the thumbnail
    level = max(i for i, (w, h) in enumerate(reader.level_dimensions) if i == 0 or (w >= tw and h >= th))
    lw, lh = reader.level_dimensions[level]
    fx, fy = tw / lw, th / lh  # thumbnail pixels per level pixel
    thumb = np.empty((th, tw, 3), dtype=np.uint8)
    unreadable = np.zeros((th, tw), dtype=bool)
    for by in range(0, lh, BLOCK):
        for bx in range(0, lw, BLOCK):
            bw, bh = min(BLOCK, lw - bx), min(BLOCK, lh - by)
            tx0, ty0 = math.floor(bx * fx), math.floor(by * fy)
            tx1, ty1 = (
                (tw if bx + bw == lw else math.floor((bx + bw) * fx)),
                (th if by + bh == lh else math.floor((by + bh) * fy)),
            )
            if tx1 <= tx0 or ty1 <= ty0:
                continue
            # read exactly the level pixels that map onto thumbnail pixels [tx0, tx1) x [ty0, ty1)
            rx0, ry0 = math.floor(tx0 / fx), math.floor(ty0 / fy)
            rx1, ry1 = min(lw, math.ceil(tx1 / fx)), min(lh, math.ceil(ty1 / fy))
            block, bad = _read_block(reader, level, rx0, ry0, rx1 - rx0, ry1 - ry0)
            image = Image.fromarray(block).resize((tx1 - tx0, ty1 - ty0), Image.Resampling.BOX)
            thumb[ty0:ty1, tx0:tx1] = np.asarray(image)
            if bad.any():
                small = Image.fromarray(bad.astype(np.uint8) * 255).resize((tx1 - tx0, ty1 - ty0), Image.Resampling.BOX)
                unreadable[ty0:ty1, tx0:tx1] = np.asarray(small) > 0
    return thumb, unreadable


def _read_block(reader: SlideReader, level: int, x: int, y: int, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        return reader.read_region(level, x, y, w, h), np.zeros((h, w), dtype=bool)
    except RegionReadError:
        pass
    block = np.full((h, w, 3), WHITE, dtype=np.uint8)
    bad = np.zeros((h, w), dtype=bool)
    for py in range(0, h, RETRY):
        for px in range(0, w, RETRY):
            pw, ph = min(RETRY, w - px), min(RETRY, h - py)
            try:
                block[py : py + ph, px : px + pw] = reader.read_region(level, x + px, y + py, pw, ph)
            except RegionReadError:
                bad[py : py + ph, px : px + pw] = True
    return block, bad
