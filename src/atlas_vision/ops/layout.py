"""Scale geometry of Multi-Scale Attention for any token grid (pure Python; no tensors are made here).

Given the stem's token grid -- ``(h, w)`` for images, ``(d, h, w)`` for volumes -- the window ``(kh, kw)`` (or
``(kd, kh, kw)``) and the pooling stride ``(sh, sw)`` (or ``(sd, sh, sw)``); every rule below holds per axis:

* scale 0 is the grid itself; scale ``l + 1`` is scale ``l`` max-pooled with kernel = stride = ``(sh, sw)`` in
  *ceil mode*, so its grid is ``(ceil(h_l / sh), ceil(w_l / sw))`` (a partial block at the border pools only the
  tokens that exist);
* scales are added until one fits in a single window (``h_l <= kh and w_l <= kw``), the stop rule of the paper
  (spec 1.2), giving ``L = ceil(log_S(N / K)) + 1`` for square grids; ``min_scales`` can force more (extra, coarser
  scales) and ``max_scales`` fewer (``max_scales=1`` is plain window attention);
* a scale that fits in one window is a *single window* holding exactly its tokens (no padding); any other scale is
  cut into ``kh x kw`` windows after padding its grid up to a multiple of the window. Padded tokens are masked out of
  every attention by the ops, so results never depend on padding.

Windows nest across scales because ``kh % sh == 0`` and ``kw % sw == 0`` (checked): the ``kh/sh x kw/sw`` pooled
block of a fine window lies inside exactly one coarse window. Window ``(i, j)`` of scale ``l`` therefore has the
*ancestor* ``(i // sh**(m-l), j // sw**(m-l))`` (in 3-D likewise on the depth axis) at a coarser scale ``m`` --
the spatially containing window, not the raster-order neighbour the reference code uses (spec 8.1).

The same code serves 2-D and 3-D grids (any number of axes): an int window or stride is used on every axis, a
tuple gives one value per axis (anisotropic volumes, e.g. window ``(4, 8, 8)``). Windows and tokens are numbered in
raster order (row-major over the axes).

Indices in this module are 0-based: "scale 0" is the paper's scale 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

import torch

Size2D = tuple[int, int]
Size3D = tuple[int, int, int]
SizeND = tuple[int, ...]  # one int per grid axis: (h, w) or (d, h, w)

SUPPORTED_NDIMS = (2, 3)
_AXES = {2: "(h, w)", 3: "(d, h, w)"}


def axes_name(ndim: int) -> str:
    """``"(h, w)"`` / ``"(d, h, w)"``: how the axes of an ``ndim``-d grid are named in messages."""
    return _AXES.get(ndim, f"{ndim}-tuple")


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for ints ``a >= 0``, ``b >= 1``, written ``(a + b - 1) // b``.

    The form matters when ``a`` is a symbolic size (``torch.export`` with a dynamic H x W): from it, torch's symbolic
    shapes can tell that ``ceil(ceil(x / p) / s)`` equals ``ceil(x / (p * s))`` (the stem's and the pooling's own
    size formulas), which ``-(-a // b)`` hides. Hidden, that equality turned into a guard refusing batch 1 in the
    exported program and doubled the export time (``tests/test_export.py``).
    """
    return (a + b - 1) // b


def _is_int(value: object) -> bool:
    """An int (not a bool), or a symbolic int while exporting with dynamic H x W."""
    return isinstance(value, torch.SymInt) or (isinstance(value, int) and not isinstance(value, bool))


class Routing(str, Enum):
    """Which coarse window a fine window reads in the top-down pass.

    * ``SPATIAL``: the window that spatially contains it (paper eq. 2; the default, correct at every size).
    * ``REFERENCE_RASTER``: the authors' code (spec 8.1): fine window ``i`` (raster order) reads coarse window
      ``i // r``, ``r = #fine windows / #coarse windows``. Wrong whenever the coarser scale has more than one window
      and more than one window column; offered only to evaluate weights trained with that code faithfully.
    """

    SPATIAL = "spatial"
    REFERENCE_RASTER = "reference_raster"


def to_2tuple(value: int | Size2D | list[int], name: str) -> Size2D:
    """Normalise an int or an (h, w) pair to an ``(h, w)`` tuple of ints, with a clear error otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):  # (bools are rejected below)
        return (value, value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, torch.SymInt) or (isinstance(v, int) and not isinstance(v, bool)) for v in value)
    ):  # SymInt: a symbolic token grid while exporting with dynamic H x W
        return tuple(v if isinstance(v, torch.SymInt) else int(v) for v in value)
    raise ValueError(f"{name} must be an int or an (h, w) pair of ints, got {value!r}")


def to_ntuple(value: int | SizeND | list[int], ndim: int, name: str) -> SizeND:
    """Normalise an int (used on every axis) or one int per axis to an ``ndim``-tuple of ints.

    ``ndim == 2`` is exactly :func:`to_2tuple`.
    """
    if ndim == 2:
        return to_2tuple(value, name)
    if _is_int(value):
        return (int(value),) * ndim
    if isinstance(value, (tuple, list)) and len(value) == ndim and all(_is_int(v) for v in value):
        return tuple(int(v) for v in value)
    raise ValueError(f"{name} must be an int or a {axes_name(ndim)} tuple of {ndim} ints, got {value!r}")


def grid_ndim(grid: int | SizeND | list[int]) -> int:
    """Number of axes of a token grid given as an int (a square 2-D grid) or a tuple of 2 or 3 ints."""
    if _is_int(grid):
        return 2
    if isinstance(grid, (tuple, list)) and len(grid) in SUPPORTED_NDIMS and all(_is_int(v) for v in grid):
        return len(grid)
    raise ValueError(f"grid must be an int, an (h, w) pair or a (d, h, w) triple of ints, got {grid!r}")


def _grid_text(grid: SizeND) -> str:
    return "x".join(str(v) for v in grid)


@dataclass(frozen=True)
class ScaleGeometry:
    """Geometry of one scale (2-D or 3-D; every tuple has one entry per grid axis).

    Attributes:
        grid: ``(h, w)`` (or ``(d, h, w)``) valid tokens of this scale.
        window: ``(kh, kw)`` window shape used to partition this scale (the whole grid for a single-window scale).
        num_windows: ``(nh, nw)`` windows along each axis.
    """

    grid: SizeND
    window: SizeND
    num_windows: SizeND

    @property
    def ndim(self) -> int:
        return len(self.grid)

    @property
    def padded_grid(self) -> SizeND:
        return tuple(n * k for n, k in zip(self.num_windows, self.window))

    @property
    def num_tokens(self) -> int:
        return math.prod(self.grid)

    @property
    def tokens_per_window(self) -> int:
        return math.prod(self.window)

    @property
    def windows_total(self) -> int:
        return math.prod(self.num_windows)

    @property
    def is_single_window(self) -> bool:
        return all(n == 1 for n in self.num_windows)

    @property
    def needs_padding(self) -> bool:
        return self.padded_grid != self.grid


def ravel_index(index: SizeND, shape: SizeND) -> int:
    """Raster (row-major) flat index of a multi-index."""
    flat = 0
    for i, n in zip(index, shape):
        flat = flat * n + i
    return flat


def unravel_index(flat: int, shape: SizeND) -> SizeND:
    """Inverse of :func:`ravel_index`."""
    index = []
    for n in reversed(shape):
        flat, i = divmod(flat, n)
        index.append(i)
    return tuple(reversed(index))


@dataclass(frozen=True)
class MultiScaleLayout:
    """Per-scale grids and window partitions for one token grid. Build it with :meth:`from_grid`.

    Attributes:
        scales: one :class:`ScaleGeometry` per scale, finest first.
        window: ``(kh, kw)`` (or ``(kd, kh, kw)``) window side requested for every multi-window scale.
        stride: ``(sh, sw)`` (or ``(sd, sh, sw)``) pooling stride between consecutive scales.
        routing: :class:`Routing` of the top-down pass (used by :meth:`ancestor_window`).
    """

    scales: tuple[ScaleGeometry, ...]
    window: SizeND
    stride: SizeND
    routing: Routing = Routing.SPATIAL

    @property
    def num_scales(self) -> int:
        return len(self.scales)

    @property
    def ndim(self) -> int:
        """Axes of the token grid: 2 for images, 3 for volumes."""
        return len(self.window)

    def __getitem__(self, scale: int) -> ScaleGeometry:
        return self.scales[scale]

    @staticmethod
    def from_grid(
        grid: int | SizeND,
        window: int | SizeND = 16,
        stride: int | SizeND = 4,
        *,
        min_scales: int = 1,
        max_scales: int | None = None,
        routing: Routing | str = Routing.SPATIAL,
    ) -> MultiScaleLayout:
        """Build the layout of a token grid.

        Args:
            grid: ``(h, w)`` or ``(d, h, w)`` tokens at scale 0 (the stem output), each >= 1; an int is a square
                2-D grid.
            window: window side per axis (an int = the same on every axis), each >= 2 (1-token windows only make
                sense as a single scale, see below).
            stride: pooling stride per axis, each >= 2 and dividing the window side.
            min_scales: build at least this many scales even if a coarser one is not needed by the stop rule
                (Atlas uses one scale per macro-stage).
            max_scales: build at most this many scales (1 = single-scale window attention).
            routing: :class:`Routing` of the top-down pass (``reference_raster`` only to reproduce the authors' code).

        Returns:
            The layout; cached, so building it per forward call is cheap.
        """
        ndim = grid_ndim(grid)
        grid_n = to_ntuple(grid, ndim, "grid")
        window_n = to_ntuple(window, ndim, "window")
        stride_n = to_ntuple(stride, ndim, "stride")
        try:
            routing = Routing(routing)
        except ValueError:
            raise ValueError(f"routing={routing!r} is not valid; choose one of {[r.value for r in Routing]}") from None
        symbolic = any(isinstance(v, torch.SymInt) for v in grid_n)
        if symbolic or torch.compiler.is_compiling():  # traced: the plain function (constant-folded by dynamo)
            return _build_layout.__wrapped__(grid_n, window_n, stride_n, min_scales, max_scales, routing)
        return _build_layout(grid_n, window_n, stride_n, min_scales, max_scales, routing)

    def ancestor_window(self, scale: int, window_index: int, coarse_scale: int) -> int:
        """Flat index of the window at ``coarse_scale`` that window ``window_index`` of ``scale`` reads in the
        top-down pass: the one that spatially contains it (``routing="spatial"``), or the raster-order one of the
        reference code (``routing="reference_raster"``, spec 8.1).

        Window indices are raster order over ``num_windows`` (row-major). This is the one place the pairing is
        decided.
        """
        if not 0 <= scale <= coarse_scale < self.num_scales:
            raise ValueError(
                f"need 0 <= scale <= coarse_scale < num_scales={self.num_scales}, got scale={scale}, "
                f"coarse_scale={coarse_scale}"
            )
        fine, coarse = self.scales[scale], self.scales[coarse_scale]
        if self.routing is Routing.REFERENCE_RASTER:
            if fine.windows_total % coarse.windows_total:
                raise ValueError(
                    f"routing='reference_raster' needs the {fine.windows_total} windows of scale {scale} to be a "
                    f"multiple of the {coarse.windows_total} windows of scale {coarse_scale} (the reference code "
                    f"repeats each coarse window r times); this image size is not one the reference supports"
                )
            return window_index // (fine.windows_total // coarse.windows_total)
        levels = coarse_scale - scale
        index = unravel_index(window_index, fine.num_windows)
        ancestor = tuple(min(i // s**levels, n - 1) for i, s, n in zip(index, self.stride, coarse.num_windows))
        return ravel_index(ancestor, coarse.num_windows)

    def ancestor_windows(self, scale: int, coarse_scale: int) -> tuple[int, ...]:
        """:meth:`ancestor_window` for every window of ``scale``, in raster order."""
        return tuple(
            self.ancestor_window(scale, index, coarse_scale) for index in range(self.scales[scale].windows_total)
        )

    def bottomup_block(self, scale: int) -> SizeND:
        """The coarse tokens of ``scale`` pooled from one window of ``scale - 1``: ``(kh/sh, kw/sw)`` (per axis), or
        the whole coarse grid when the fine scale is one window (the block the bottom-up pass attends with)."""
        fine = self.scales[scale - 1]
        if fine.is_single_window:
            return self.scales[scale].grid
        return tuple(k // s for k, s in zip(fine.window, self.stride))

    def describe(self) -> str:
        """One line per scale, e.g. for logs: ``scale 0: 64x64 tokens, 4x4 windows of 16x16``."""
        lines = []
        for index, geo in enumerate(self.scales):
            lines.append(
                f"scale {index}: {_grid_text(geo.grid)} tokens, {_grid_text(geo.num_windows)} "
                f"window(s) of {_grid_text(geo.window)}"
            )
        return "\n".join(lines)


def _fits(grid: SizeND, window: SizeND) -> bool:
    return all(g <= k for g, k in zip(grid, window))


@lru_cache(maxsize=512)
def _build_layout(
    grid: SizeND, window: SizeND, stride: SizeND, min_scales: int, max_scales: int | None, routing: Routing
) -> MultiScaleLayout:
    ndim = len(grid)
    if any(g < 1 for g in grid):
        raise ValueError(f"token grid must be at least {_grid_text((1,) * ndim)}, got {_grid_text(grid)}")
    if any(k < 1 for k in window):
        raise ValueError(f"window must be >= 1 on each side, got {window}")
    if any(s < 2 for s in stride):
        raise ValueError(f"pooling stride must be >= 2 on each side, got {stride}")
    if any(k % s for k, s in zip(window, stride)):
        raise ValueError(
            f"window {window} must be divisible by the pooling stride {stride} on each side, so that every fine "
            f"window pools into exactly one coarse window"
        )
    if not isinstance(min_scales, int) or min_scales < 1:
        raise ValueError(f"min_scales must be an int >= 1, got {min_scales!r}")
    if max_scales is not None and (not isinstance(max_scales, int) or max_scales < 1):
        raise ValueError(f"max_scales must be None or an int >= 1, got {max_scales!r}")
    if max_scales is not None and max_scales < min_scales:
        raise ValueError(f"max_scales={max_scales} must be >= min_scales={min_scales}")

    grids = [grid]
    while True:
        done_by_rule = _fits(grids[-1], window) and len(grids) >= min_scales
        if done_by_rule or (max_scales is not None and len(grids) >= max_scales):
            break
        grids.append(tuple(ceil_div(g, s) for g, s in zip(grids[-1], stride)))

    scales = []
    for g in grids:
        if _fits(g, window):
            scales.append(ScaleGeometry(grid=g, window=g, num_windows=(1,) * ndim))
        else:
            num = tuple(ceil_div(n, k) for n, k in zip(g, window))
            scales.append(ScaleGeometry(grid=g, window=window, num_windows=num))
    return MultiScaleLayout(scales=tuple(scales), window=window, stride=stride, routing=routing)
