"""Fast path: windows folded into the batch axis, one ``F.scaled_dot_product_attention`` call per pass
(:func:`atlas_vision.ops.windowed.attend_windows`, the same windowed attention the window / Swin / HAT mixers use).

Top-down at scale ``l``: the queries of each window attend to ``[own window | ancestor window at l+1 | ... ]``.
K/V arrive already projected (computed once per scale update by the caller -- the paper's QKV cache, kept in local
variables). The ancestor K/V are taken with ``expand`` when the coarser scale is a single window (no copy) and with
``index_select`` over the ancestor map otherwise; the only copy is the ``cat`` that lines them up behind each window's
own keys, which SDPA needs (contiguous keys per query block). Padded tokens are removed with a boolean key mask, only
built when a scale actually needs padding.

Bottom-up at scale ``l``: the coarse queries are cut into ``(kh/sh) x (kw/sw)`` blocks -- exactly the coarse tokens
pooled from one fine window -- and each block attends to that fine window's K/V, so the fine K/V are used in place.

Volumes (3-D layouts, ``[B, d, h, w, n, d_head]`` maps) take the same path: the window helpers are N-d.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from atlas_vision.ops.layout import MultiScaleLayout
from atlas_vision.ops.windowed import attend_windows
from atlas_vision.ops.windows import from_windows, to_windows, window_validity


def sdpa_topdown_attention(
    q: torch.Tensor,
    keys: Sequence[torch.Tensor],
    values: Sequence[torch.Tensor],
    layout: MultiScaleLayout,
    scale: int,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """Top-down windowed attention of scale ``scale``; see :func:`atlas_vision.ops.topdown_attention`."""
    geo = layout[scale]
    q_w = to_windows(q, geo.num_windows, geo.window)  # [B, W, n, T, d]
    num_w = geo.windows_total
    k_parts, v_parts, valid_parts = [], [], []
    any_padding = False
    for offset, (k, v) in enumerate(zip(keys, values)):
        src = layout[scale + offset]
        k_w = to_windows(k, src.num_windows, src.window)  # [B, W_src, n, T_src, d]
        v_w = to_windows(v, src.num_windows, src.window)
        valid = window_validity(src.grid, src.num_windows, src.window, q.device)  # [W_src, T_src]
        any_padding |= src.needs_padding
        if offset > 0:  # line up the ancestor window of every query window
            if src.is_single_window:
                k_w = k_w.expand(-1, num_w, -1, -1, -1)
                v_w = v_w.expand(-1, num_w, -1, -1, -1)
                valid = valid.expand(num_w, -1)
            else:
                index = torch.tensor(layout.ancestor_windows(scale, scale + offset), device=q.device)
                k_w = k_w.index_select(1, index)
                v_w = v_w.index_select(1, index)
                valid = valid.index_select(0, index)
        k_parts.append(k_w)
        v_parts.append(v_w)
        valid_parts.append(valid)
    k_all = torch.cat(k_parts, dim=3) if len(k_parts) > 1 else k_parts[0]  # [B, W, n, sum T_src, d]
    v_all = torch.cat(v_parts, dim=3) if len(v_parts) > 1 else v_parts[0]
    valid_all = torch.cat(valid_parts, dim=1) if any_padding else None  # [W, sum T_src]
    out = attend_windows(q_w, k_all, v_all, valid_all, softmax_scale)
    return from_windows(out, geo.num_windows, geo.window, geo.grid)


def sdpa_bottomup_attention(
    q: torch.Tensor,
    k_fine: torch.Tensor,
    v_fine: torch.Tensor,
    layout: MultiScaleLayout,
    scale: int,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """Bottom-up attention of scale ``scale`` into scale ``scale - 1``; see :func:`atlas_vision.ops.bottomup_attention`."""
    fine, coarse = layout[scale - 1], layout[scale]
    block = layout.bottomup_block(scale)  # (kh/sh, kw/sw) (or 3-D); the coarse grid if the fine scale is one window
    q_w = to_windows(q, fine.num_windows, block)  # [B, W_fine, n, block tokens, d]
    k_w = to_windows(k_fine, fine.num_windows, fine.window)  # [B, W_fine, n, T_fine, d]
    v_w = to_windows(v_fine, fine.num_windows, fine.window)
    valid = window_validity(fine.grid, fine.num_windows, fine.window, q.device) if fine.needs_padding else None
    out = attend_windows(q_w, k_w, v_w, valid, softmax_scale)
    return from_windows(out, fine.num_windows, block, coarse.grid)
