"""Scale geometry of Multi-Scale Attention for any token grid (pure Python; no tensors are made here).

Given the stem's token grid ``(h, w)``, the window ``(kh, kw)`` and the pooling stride ``(sh, sw)``:

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
*ancestor* ``(i // sh**(m-l), j // sw**(m-l))`` at a coarser scale ``m`` -- the spatially containing window, not the
raster-order neighbour the reference code uses (spec 8.1).

Indices in this module are 0-based: "scale 0" is the paper's scale 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

import torch

Size2D = tuple[int, int]


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
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int or an (h, w) pair of ints, got {value!r}")
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, torch.SymInt) or (isinstance(v, int) and not isinstance(v, bool)) for v in value
    ):  # SymInt: a symbolic token grid while exporting with dynamic H x W
        return tuple(v if isinstance(v, torch.SymInt) else int(v) for v in value)
    raise ValueError(f"{name} must be an int or an (h, w) pair of ints, got {value!r}")


@dataclass(frozen=True)
class ScaleGeometry:
    """Geometry of one scale.

    Attributes:
        grid: ``(h, w)`` valid tokens of this scale.
        window: ``(kh, kw)`` window shape used to partition this scale (the whole grid for a single-window scale).
        num_windows: ``(nh, nw)`` windows along each axis.
    """

    grid: Size2D
    window: Size2D
    num_windows: Size2D

    @property
    def padded_grid(self) -> Size2D:
        return (self.num_windows[0] * self.window[0], self.num_windows[1] * self.window[1])

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def tokens_per_window(self) -> int:
        return self.window[0] * self.window[1]

    @property
    def windows_total(self) -> int:
        return self.num_windows[0] * self.num_windows[1]

    @property
    def is_single_window(self) -> bool:
        return self.num_windows == (1, 1)

    @property
    def needs_padding(self) -> bool:
        return self.padded_grid != self.grid


@dataclass(frozen=True)
class MultiScaleLayout:
    """Per-scale grids and window partitions for one token grid. Build it with :meth:`from_grid`.

    Attributes:
        scales: one :class:`ScaleGeometry` per scale, finest first.
        window: ``(kh, kw)`` window side requested for every multi-window scale.
        stride: ``(sh, sw)`` pooling stride between consecutive scales.
        routing: :class:`Routing` of the top-down pass (used by :meth:`ancestor_window`).
    """

    scales: tuple[ScaleGeometry, ...]
    window: Size2D
    stride: Size2D
    routing: Routing = Routing.SPATIAL

    @property
    def num_scales(self) -> int:
        return len(self.scales)

    def __getitem__(self, scale: int) -> ScaleGeometry:
        return self.scales[scale]

    @staticmethod
    def from_grid(
        grid: int | Size2D,
        window: int | Size2D = 16,
        stride: int | Size2D = 4,
        *,
        min_scales: int = 1,
        max_scales: int | None = None,
        routing: Routing | str = Routing.SPATIAL,
    ) -> MultiScaleLayout:
        """Build the layout of a token grid.

        Args:
            grid: ``(h, w)`` tokens at scale 0 (the stem output), each >= 1.
            window: window side ``(kh, kw)``, each >= 2 (1x1 windows only make sense as a single scale, see below).
            stride: pooling stride ``(sh, sw)``, each >= 2 and dividing the window side.
            min_scales: build at least this many scales even if a coarser one is not needed by the stop rule
                (Atlas uses one scale per macro-stage).
            max_scales: build at most this many scales (1 = single-scale window attention).
            routing: :class:`Routing` of the top-down pass (``reference_raster`` only to reproduce the authors' code).

        Returns:
            The layout; cached, so building it per forward call is cheap.
        """
        grid_hw = to_2tuple(grid, "grid")
        window_hw = to_2tuple(window, "window")
        stride_hw = to_2tuple(stride, "stride")
        try:
            routing = Routing(routing)
        except ValueError:
            raise ValueError(f"routing={routing!r} is not valid; choose one of {[r.value for r in Routing]}") from None
        symbolic = any(isinstance(v, torch.SymInt) for v in grid_hw)
        if symbolic or torch.compiler.is_compiling():  # traced: the plain function (constant-folded by dynamo)
            return _build_layout.__wrapped__(grid_hw, window_hw, stride_hw, min_scales, max_scales, routing)
        return _build_layout(grid_hw, window_hw, stride_hw, min_scales, max_scales, routing)

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
        i, j = divmod(window_index, fine.num_windows[1])
        levels = coarse_scale - scale
        ci = min(i // self.stride[0] ** levels, coarse.num_windows[0] - 1)
        cj = min(j // self.stride[1] ** levels, coarse.num_windows[1] - 1)
        return ci * coarse.num_windows[1] + cj

    def ancestor_windows(self, scale: int, coarse_scale: int) -> tuple[int, ...]:
        """:meth:`ancestor_window` for every window of ``scale``, in raster order."""
        return tuple(
            self.ancestor_window(scale, index, coarse_scale) for index in range(self.scales[scale].windows_total)
        )

    def describe(self) -> str:
        """One line per scale, e.g. for logs: ``scale 0: 64x64 tokens, 4x4 windows of 16x16``."""
        lines = []
        for index, geo in enumerate(self.scales):
            lines.append(
                f"scale {index}: {geo.grid[0]}x{geo.grid[1]} tokens, {geo.num_windows[0]}x{geo.num_windows[1]} "
                f"window(s) of {geo.window[0]}x{geo.window[1]}"
            )
        return "\n".join(lines)


def _fits(grid: Size2D, window: Size2D) -> bool:
    return grid[0] <= window[0] and grid[1] <= window[1]


@lru_cache(maxsize=512)
def _build_layout(
    grid: Size2D, window: Size2D, stride: Size2D, min_scales: int, max_scales: int | None, routing: Routing
) -> MultiScaleLayout:
    if grid[0] < 1 or grid[1] < 1:
        raise ValueError(f"token grid must be at least 1x1, got {grid[0]}x{grid[1]}")
    if window[0] < 1 or window[1] < 1:
        raise ValueError(f"window must be >= 1 on each side, got {window}")
    if stride[0] < 2 or stride[1] < 2:
        raise ValueError(f"pooling stride must be >= 2 on each side, got {stride}")
    if window[0] % stride[0] or window[1] % stride[1]:
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
        h, w = grids[-1]
        grids.append((-(-h // stride[0]), -(-w // stride[1])))  # ceil division (exact for symbolic ints too)

    scales = []
    for g in grids:
        if _fits(g, window):
            scales.append(ScaleGeometry(grid=g, window=g, num_windows=(1, 1)))
        else:
            num = (-(-g[0] // window[0]), -(-g[1] // window[1]))
            scales.append(ScaleGeometry(grid=g, window=window, num_windows=num))
    return MultiScaleLayout(scales=tuple(scales), window=window, stride=stride, routing=routing)
