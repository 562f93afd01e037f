"""Summarize: the strided pooling that builds (and refreshes) each coarser scale from the one below it (spec 1.2)."""

from __future__ import annotations

from enum import Enum

import torch
import torch.nn.functional as F

from atlas_vision.ops.layout import MultiScaleLayout, SizeND


class PoolOp(str, Enum):
    """How a ``sh x sw`` (or ``sd x sh x sw``) block of fine tokens is summarised into one coarse token."""

    MAX = "max"  # the paper's choice
    AVG = "avg"  # the paper's open question; offered for ablations


_MAX_POOL = {2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {2: F.avg_pool2d, 3: F.avg_pool3d}


def summarize(x_bhwc: torch.Tensor, stride: SizeND, op: PoolOp = PoolOp.MAX) -> torch.Tensor:
    """Pool a ``[B, h, w, C]`` token map by ``stride`` in ceil mode -> ``[B, ceil(h/sh), ceil(w/sw), C]``.

    A volume ``[B, d, h, w, C]`` with a 3-D ``stride`` is pooled the same way on every axis. A partial block at the
    far border of an axis pools only the tokens that exist (max over them, or their mean), so a coarse token never
    sees padding.
    """
    nd = x_bhwc.dim() - 2
    if nd not in _MAX_POOL or len(stride) != nd:
        raise ValueError(
            f"summarize needs a [B, h, w, C] or [B, d, h, w, C] map and one stride per grid axis, got shape "
            f"{tuple(x_bhwc.shape)} and stride {tuple(stride)}"
        )
    x_bchw = x_bhwc.movedim(-1, 1)  # [B, C, h, w] view (channels-last strides)
    if op is PoolOp.MAX:
        pooled = _MAX_POOL[nd](x_bchw, kernel_size=stride, stride=stride, ceil_mode=True)
    elif op is PoolOp.AVG:
        # with padding=0 and ceil_mode, avg_pool divides a border block by the number of real tokens in it
        pooled = _AVG_POOL[nd](x_bchw, kernel_size=stride, stride=stride, ceil_mode=True, count_include_pad=False)
    else:  # pragma: no cover - Enum exhausts the cases
        raise ValueError(f"unknown pooling op {op!r}; valid: {[p.value for p in PoolOp]}")
    return pooled.movedim(1, -1)  # [B, h', w', C]


def scale_pyramid(x_bhwc: torch.Tensor, layout: MultiScaleLayout, op: PoolOp = PoolOp.MAX) -> list[torch.Tensor]:
    """The initial per-scale maps of a token map (Algorithm 2, lines 1-2): scale 0 is ``x`` itself, scale ``l + 1``
    is :func:`summarize` of scale ``l``.

    Args:
        x_bhwc: ``[B, h, w, C]`` with ``(h, w) = layout[0].grid`` (volumes: ``[B, d, h, w, C]``, a 3-D layout).
        layout: the scales to build.
        op: pooling of each summary.

    Returns:
        one ``[B, h_l, w_l, C]`` map per scale of ``layout``, finest first.
    """
    if x_bhwc.dim() != layout.ndim + 2 or tuple(x_bhwc.shape[1:-1]) != tuple(layout[0].grid):
        axes = "h, w" if layout.ndim == 2 else "d, h, w"
        raise ValueError(
            f"scale_pyramid needs a [B, {axes}, C] map with ({axes}) = {tuple(layout[0].grid)}, got "
            f"{tuple(x_bhwc.shape)}"
        )
    xs = [x_bhwc]
    for _ in range(1, layout.num_scales):
        xs.append(summarize(xs[-1], layout.stride, op))
    return xs
