"""Synthetic whole-slide images: tissue-like pieces on a white background, written as a pyramidal, tiled,
JPEG-compressed TIFF with microns-per-pixel metadata (readable by tifffile and OpenSlide).

Composable in three parts:

* :class:`TissueLayout` - where the tissue is: a few irregular blobs (:class:`TissuePiece`, ellipses whose radius
  is modulated by a random sum of angular harmonics), in level-0 pixels. ``TissueLayout.random(...)`` draws one;
  ``layout.pieces`` lists the pieces (centre, radii, bounding box) and ``layout.contains(x, y)`` tests points, so a
  caller can put its own structures into chosen (e.g. distant) pieces.
* painters - the hook for caller-defined structures. A painter is any callable
  ``painter(tile, x0, y0, downsample) -> None`` that paints in place on ``tile`` (``[h, w, 3]`` uint8, writable):
  tile pixel ``(i, j)`` covers level-0 pixels ``[x0 + j * downsample, x0 + (j + 1) * downsample)`` horizontally (and
  the same for ``i`` and ``y0``). It is called for every tile of every pyramid level after the tissue is painted,
  so one painter, written in level-0 coordinates, paints consistently at all levels (:func:`pixel_centres` gives
  the level-0 coordinates of a tile's pixels). :func:`disc_painter` is an example.
* :func:`write_synthetic_slide` - paints tile by tile (memory stays at a few tiles, whatever the slide size) and
  writes each level as a chain of TIFF pages (reduced levels with ``NewSubfileType = 1``), JPEG tiles, resolution
  tags in centimetres (``mpp``).

Everything is a pure function of the seed, so the same call writes the same pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

Painter = Callable[[np.ndarray, float, float, float], None]
BACKGROUND = 243  # glass: near-white, as in scanned slides
_HARMONICS = 5
_TEXTURE_SIZE = 1024
_FIELD_STEP = 8  # level pixels between samples of the tissue field


@dataclass(frozen=True)
class TissuePiece:
    """An irregular blob: an ellipse (centre ``cx, cy``, semi-axes ``rx, ry``, rotated by ``angle`` rad) whose
    boundary radius is scaled by ``1 + sum_k a_k cos(k * theta + phase_k)`` (``amplitudes`` and ``phases``)."""

    cx: float
    cy: float
    rx: float
    ry: float
    angle: float
    amplitudes: tuple[float, ...]
    phases: tuple[float, ...]

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """``(x0, y0, x1, y1)`` in level-0 pixels, enclosing the blob."""
        r = max(self.rx, self.ry) * (1 + sum(abs(a) for a in self.amplitudes))
        return self.cx - r, self.cy - r, self.cx + r, self.cy + r

    def field(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """A smooth function of level-0 points, positive inside the blob: ``radius(theta)^2 - (u^2 + v^2)`` in
        units of the semi-axes."""
        dx, dy = x - self.cx, y - self.cy
        c, s = math.cos(self.angle), math.sin(self.angle)
        u, v = (dx * c + dy * s) / self.rx, (-dx * s + dy * c) / self.ry
        theta = np.arctan2(v, u)
        radius = 1.0 + sum(
            a * np.cos((k + 1) * theta + p) for k, (a, p) in enumerate(zip(self.amplitudes, self.phases))
        )
        return radius * radius - (u * u + v * v)

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Boolean membership of level-0 points (broadcasting ``x`` and ``y``)."""
        return self.field(x, y) > 0


@dataclass(frozen=True)
class TissueLayout:
    """The tissue of a synthetic slide of ``width x height`` level-0 pixels."""

    width: int
    height: int
    pieces: tuple[TissuePiece, ...]

    @classmethod
    def random(cls, width: int, height: int, seed: int = 0, num_pieces: int = 6, coverage: float = 0.3) -> TissueLayout:
        """``num_pieces`` blobs on a jittered grid, sized so they cover about ``coverage`` of the slide."""
        if width < 64 or height < 64:
            raise ValueError(f"synthetic slide must be at least 64x64 px, got {width}x{height}")
        if num_pieces < 0:
            raise ValueError(f"num_pieces must be >= 0, got {num_pieces}")
        if not 0 < coverage < 1:
            raise ValueError(f"coverage must be in (0, 1), got {coverage}")
        rng = np.random.default_rng(seed)
        cols = max(1, round(math.sqrt(num_pieces * width / height)))
        rows = max(1, math.ceil(num_pieces / cols))
        cell_w, cell_h = width / cols, height / rows
        mean_r = math.sqrt(coverage * width * height / max(num_pieces, 1) / math.pi)
        pieces = []
        for i in range(num_pieces):
            row, col = divmod(i, cols)
            aspect = rng.uniform(0.6, 1.0)
            r = min(mean_r, 0.42 * min(cell_w, cell_h) / (1.25 * max(aspect, 1 / aspect)))
            pieces.append(
                TissuePiece(
                    cx=(col + 0.5 + rng.uniform(-0.08, 0.08)) * cell_w,
                    cy=(row + 0.5 + rng.uniform(-0.08, 0.08)) * cell_h,
                    rx=r / math.sqrt(aspect),
                    ry=r * math.sqrt(aspect),
                    angle=float(rng.uniform(0, math.pi)),
                    amplitudes=tuple(float(a) for a in rng.uniform(0, 0.25, _HARMONICS) / np.arange(1, _HARMONICS + 1)),
                    phases=tuple(float(p) for p in rng.uniform(0, 2 * math.pi, _HARMONICS)),
                )
            )
        return cls(width, height, tuple(pieces))

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """True where a level-0 point lies in some piece."""
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        inside = np.zeros(np.broadcast_shapes(x.shape, y.shape), dtype=bool)
        for piece in self.pieces:
            inside |= piece.contains(x, y)
        return inside

    def tile_mask(self, x0: float, y0: float, shape: tuple[int, int], downsample: float) -> np.ndarray:
        """``[h, w]`` membership of a tile's pixel centres. Each piece's :meth:`TissuePiece.field` is evaluated on
        a grid every ``_FIELD_STEP`` pixels and interpolated bilinearly (the field is smooth, so the boundary stays
        smooth); only pieces whose bbox meets the tile are evaluated."""
        h, w = shape
        x1, y1 = x0 + w * downsample, y0 + h * downsample
        hits = [p for p in self.pieces if not (p.bbox[2] < x0 or p.bbox[3] < y0 or p.bbox[0] > x1 or p.bbox[1] > y1)]
        if not hits:
            return np.zeros((h, w), dtype=bool)
        step = _FIELD_STEP * downsample
        cx = x0 + np.arange(math.ceil(w / _FIELD_STEP) + 2) * step  # coarse sample points (level 0), cover the tile
        cy = y0 + np.arange(math.ceil(h / _FIELD_STEP) + 2) * step
        xs, ys = pixel_centres(shape, x0, y0, downsample)
        field = np.full((len(cy), len(cx)), -1.0, dtype=np.float32)  # [ny, nx]; < 0: outside every piece
        for piece in hits:
            field = np.maximum(field, piece.field(cx[None, :], cy[:, None]))
        (iy, fy), (ix, fx) = _lerp_index(cy, ys), _lerp_index(cx, xs)
        rows = field[iy] * (1 - fy[:, None]) + field[iy + 1] * fy[:, None]  # [h, nx]
        return rows[:, ix] * (1 - fx) + rows[:, ix + 1] * fx > 0  # [h, w]

    def tissue_fraction(self, samples: int = 512) -> float:
        """Fraction of the slide area covered by tissue (on a ``samples``-per-side grid)."""
        return float(
            self.tile_mask(0, 0, (samples, samples), max(self.width, self.height) / samples)[
                : int(samples * self.height / max(self.width, self.height)) or 1,
                : int(samples * self.width / max(self.width, self.height)) or 1,
            ].mean()
        )


def _lerp_index(coarse: np.ndarray, fine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each ``fine`` point: the index of the evenly spaced ``coarse`` sample at its left and its fraction."""
    pos = np.clip((fine - coarse[0]) / (coarse[1] - coarse[0]), 0, len(coarse) - 1.000001)
    left = np.floor(pos).astype(np.intp)
    return left, (pos - left).astype(np.float32)


def pixel_centres(shape: tuple[int, int], x0: float, y0: float, downsample: float) -> tuple[np.ndarray, np.ndarray]:
    """Level-0 coordinates ``(xs [w], ys [h])`` of the centres of a tile's pixels."""
    h, w = shape
    return x0 + (np.arange(w) + 0.5) * downsample, y0 + (np.arange(h) + 0.5) * downsample


def disc_painter(cx: float, cy: float, radius: float, rgb: tuple[int, int, int]) -> Painter:
    """A painter filling the disc of ``radius`` level-0 px at ``(cx, cy)`` with colour ``rgb`` (e.g. a marker)."""
    colour = np.asarray(rgb, dtype=np.uint8)

    def paint(tile: np.ndarray, x0: float, y0: float, downsample: float) -> None:
        h, w = tile.shape[:2]
        if (
            cx + radius < x0
            or cy + radius < y0
            or cx - radius > x0 + w * downsample
            or cy - radius > y0 + h * downsample
        ):
            return
        xs, ys = pixel_centres((h, w), x0, y0, downsample)
        tile[(xs[None, :] - cx) ** 2 + (ys[:, None] - cy) ** 2 < radius * radius] = colour

    return paint


@dataclass
class _Texture:
    """H&E-like texture at one pyramid level: pink stroma with fibre streaks, purple nuclei, white vacuoles."""

    pixels: np.ndarray  # [2T, 2T, 3] uint8: the texture and its mirror images, so it tiles without seams

    def crop(self, x: int, y: int, h: int, w: int) -> np.ndarray:
        size = self.pixels.shape[0]
        x, y = x % size, y % size
        if x + w <= size and y + h <= size:
            return self.pixels[y : y + h, x : x + w]
        rows, cols = (y + np.arange(h)) % size, (x + np.arange(w)) % size
        return self.pixels[rows[:, None], cols[None, :]]


def _make_texture(seed: int, nucleus_radius_px: float) -> np.ndarray:
    """``[T, T, 3]`` uint8 level-0 texture (T = 1024)."""
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    t = _TEXTURE_SIZE

    def smooth_noise(cells: int) -> np.ndarray:
        small = Image.fromarray((rng.random((cells, cells)) * 255).astype(np.uint8))
        return np.asarray(small.resize((t, t), Image.Resampling.BICUBIC), dtype=np.float32) / 255.0

    fibres = smooth_noise(48) * 0.6 + smooth_noise(160) * 0.4  # [T, T] in 0..1
    stroma = np.stack([232 - 30 * fibres, 150 - 50 * fibres, 190 - 30 * fibres], axis=-1)  # eosin pink
    seeds = np.zeros((t, t), dtype=np.uint8)
    count = int(t * t / (40 * nucleus_radius_px) ** 2 * 20)
    seeds[rng.integers(0, t, count), rng.integers(0, t, count)] = 255
    blobs = Image.fromarray(seeds).filter(ImageFilter.GaussianBlur(nucleus_radius_px))
    nuclei = np.asarray(blobs, dtype=np.float32)
    nuclei = np.clip(nuclei / max(nuclei.max(), 1) * 3.0, 0, 1)[..., None]  # soft round discs
    hematoxylin = np.array([90, 50, 140], dtype=np.float32)
    vacuoles = smooth_noise(24) > 0.82
    image = stroma * (1 - nuclei) + hematoxylin * nuclei
    image[vacuoles] = 236
    return np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)


def _level_textures(base: np.ndarray, downsamples: Sequence[float]) -> list[_Texture]:
    from PIL import Image

    textures = []
    for ds in downsamples:
        size = max(16, round(_TEXTURE_SIZE / ds))
        small = np.asarray(Image.fromarray(base).resize((size, size), Image.Resampling.BOX))
        top = np.concatenate([small, small[:, ::-1]], axis=1)
        textures.append(_Texture(np.ascontiguousarray(np.concatenate([top, top[::-1]], axis=0))))
    return textures


@dataclass(frozen=True)
class SyntheticSlide:
    """What :func:`write_synthetic_slide` wrote."""

    path: Path
    layout: TissueLayout
    level_dimensions: tuple[tuple[int, int], ...]
    mpp: float
    tile_size: int
    painters: tuple[Painter, ...] = field(default=(), repr=False)


def render_tile(
    layout: TissueLayout,
    texture: _Texture,
    x: int,
    y: int,
    shape: tuple[int, int],
    downsample: float,
    painters: Sequence[Painter] = (),
) -> np.ndarray:
    """``[h, w, 3]`` uint8 of the level-pixel rectangle at ``(x, y)`` of the level with ``downsample``."""
    h, w = shape
    x0, y0 = x * downsample, y * downsample
    tile = np.full((h, w, 3), BACKGROUND, dtype=np.uint8)
    mask = layout.tile_mask(x0, y0, shape, downsample)
    if mask.any():
        tile = np.where(mask[:, :, None], texture.crop(x, y, h, w), tile)
    for paint in painters:
        paint(tile, x0, y0, downsample)
    return tile


def write_synthetic_slide(
    path: str | Path,
    width: int,
    height: int,
    *,
    mpp: float = 0.5,
    seed: int = 0,
    layout: TissueLayout | None = None,
    painters: Sequence[Painter] = (),
    tile_size: int = 512,
    min_level_side: int = 1024,
    quality: int = 85,
) -> SyntheticSlide:
    """Write a pyramidal, tiled, JPEG-compressed TIFF of ``width x height`` level-0 px at ``mpp`` µm/px.

    Args:
        layout: where the tissue is (default ``TissueLayout.random(width, height, seed)``).
        painters: caller-defined structures, painted after the tissue (see the module docstring).
        tile_size: TIFF tile side (a multiple of 16).
        min_level_side: levels halve until the longer side is <= this.
        quality: JPEG quality (1..100).
    """
    import tifffile

    if tile_size % 16 or tile_size <= 0:
        raise ValueError(f"tile_size must be a positive multiple of 16, got {tile_size}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    if not mpp > 0:
        raise ValueError(f"mpp must be > 0, got {mpp}")
    layout = layout or TissueLayout.random(width, height, seed)
    if (layout.width, layout.height) != (width, height):
        raise ValueError(f"layout is for {layout.width}x{layout.height}, slide is {width}x{height}")
    dims = [(width, height)]
    while max(dims[-1]) > min_level_side:
        dims.append((max(1, dims[-1][0] // 2), max(1, dims[-1][1] // 2)))
    downsamples = [width / w for w, _ in dims]
    textures = _level_textures(_make_texture(seed, nucleus_radius_px=2.5 / mpp), downsamples)

    def tiles(level: int) -> Iterator[np.ndarray]:
        w, h = dims[level]
        for ty in range(0, h, tile_size):
            for tx in range(0, w, tile_size):
                tile = np.full((tile_size, tile_size, 3), BACKGROUND, dtype=np.uint8)
                hh, ww = min(tile_size, h - ty), min(tile_size, w - tx)
                tile[:hh, :ww] = render_tile(layout, textures[level], tx, ty, (hh, ww), downsamples[level], painters)
                yield tile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path, bigtiff=width * height * 3 > 2**31) as tif:
        for level, (w, h) in enumerate(dims):
            ppcm = 1e4 / (mpp * downsamples[level])
            tif.write(
                tiles(level),
                shape=(h, w, 3),
                dtype=np.uint8,
                tile=(tile_size, tile_size),
                photometric="rgb",
                compression="jpeg",
                compressionargs={"level": quality},
                resolution=(ppcm, ppcm),
                resolutionunit="CENTIMETER",
                subfiletype=1 if level else 0,
                metadata=None,
                maxworkers=2,
            )
    return SyntheticSlide(path, layout, tuple(dims), mpp, tile_size, tuple(painters))
