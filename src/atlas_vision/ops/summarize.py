"""Summarize: the strided pooling that builds (and refreshes) each coarser scale from the one below it (spec 1.2)."""

from __future__ import annotations

from enum import Enum

import torch
import torch.nn.functional as F

from atlas_vision.ops.layout import MultiScaleLayout, Size2D


class PoolOp(str, Enum):
    """How a ``sh x sw`` block of fine tokens is summarised into one coarse token."""

    MAX = "max"  # the paper's choice
    AVG = "avg"  # the paper's open question; offered for ablations


def summarize(x_bhwc: torch.Tensor, stride: Size2D, op: PoolOp = PoolOp.MAX) -> torch.Tensor:
    """Pool a ``[B, h, w, C]`` token map by ``stride`` in ceil mode -> ``[B, ceil(h/sh), ceil(w/sw), C]``.

    A partial block at the bottom/right border pools only the tokens that exist (max over them, or their mean), so a
    coarse token never sees padding.
    """
    x_bchw = x_bhwc.permute(0, 3, 1, 2)  # [B, C, h, w] view (channels-last strides)
    if op is PoolOp.MAX:
        pooled = F.max_pool2d(x_bchw, kernel_size=stride, stride=stride, ceil_mode=True)
    elif op is PoolOp.AVG:
        # with padding=0 and ceil_mode, avg_pool2d divides a border block by the number of real tokens in it
        pooled = F.avg_pool2d(x_bchw, kernel_size=stride, stride=stride, ceil_mode=True, count_include_pad=False)
    else:  # pragma: no cover - Enum exhausts the cases
        raise ValueError(f"unknown pooling op {op!r}; valid: {[p.value for p in PoolOp]}")
    return pooled.permute(0, 2, 3, 1)  # [B, h', w', C]


def scale_pyramid(x_bhwc: torch.Tensor, layout: MultiScaleLayout, op: PoolOp = PoolOp.MAX) -> list[torch.Tensor]:
    """The initial per-scale maps of a token map (Algorithm 2, lines 1-2): scale 0 is ``x`` itself, scale ``l + 1``
    is :func:`summarize` of scale ``l``.

    Args:
        x_bhwc: ``[B, h, w, C]`` with ``(h, w) = layout[0].grid``.
        layout: the scales to build.
        op: pooling of each summary.

    Returns:
        one ``[B, h_l, w_l, C]`` map per scale of ``layout``, finest first.
    """
    if x_bhwc.dim() != 4 or tuple(x_bhwc.shape[1:3]) != tuple(layout[0].grid):
        raise ValueError(
            f"scale_pyramid needs a [B, h, w, C] map with (h, w) = {tuple(layout[0].grid)}, got {tuple(x_bhwc.shape)}"
        )
    xs = [x_bhwc]
    for _ in range(1, layout.num_scales):
        xs.append(summarize(xs[-1], layout.stride, op))
    return xs
