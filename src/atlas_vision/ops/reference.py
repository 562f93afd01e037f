"""Reference Multi-Scale Attention: dense attention under a visibility mask. Slow, obviously correct, any dtype.

This is the specification the fast paths are tested against. Every valid token of every scale involved is
flattened into one key sequence; a boolean mask built from *token coordinates* (not from the window bookkeeping the
fast paths use) says which keys each query may see; then plain ``softmax(q k^T * scale) v``.

Visibility (0-based scales, ``s = (sh, sw)`` the pooling stride, windows from the layout):

* top-down, query token ``(y, x)`` of scale ``l``: keys of scale ``l`` in the same window, and for every coarser scale
  ``m > l`` the keys lying in the window of scale ``m`` that contains the query's pooled position
  ``(y // sh**(m-l), x // sw**(m-l))``;
* bottom-up, query token ``(y, x)`` of scale ``l >= 1``: the keys of scale ``l - 1`` lying in the window of scale
  ``l - 1`` that contains ``(y * sh, x * sw)`` -- the fine window the query was pooled from.

Volumes (``[B, d, h, w, n, d_head]`` maps, a 3-D layout) follow the same rules with a third coordinate ``z``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from atlas_vision.ops.layout import MultiScaleLayout


def _window_ids(layout: MultiScaleLayout, scale: int, coords: Sequence[torch.Tensor]) -> torch.Tensor:
    """Flat window index (raster order) of the tokens at ``coords`` (one tensor per grid axis) of ``scale``."""
    geo = layout[scale]
    flat = torch.zeros_like(coords[0])
    for c, k, n in zip(coords, geo.window, geo.num_windows):
        flat = flat * n + c // k
    return flat


def _coords(layout: MultiScaleLayout, scale: int, device: torch.device) -> list[torch.Tensor]:
    """Per-axis coordinates ``[N]`` of every token of ``scale``, tokens in raster order."""
    axes = [torch.arange(g, device=device) for g in layout[scale].grid]
    return [c.reshape(-1) for c in torch.meshgrid(*axes, indexing="ij")]


def _dense_attention(
    q_bnqd: torch.Tensor, k_bnkd: torch.Tensor, v_bnkd: torch.Tensor, visible_qk: torch.Tensor, scale: float
) -> torch.Tensor:
    scores = torch.einsum("bnqd,bnkd->bnqk", q_bnqd, k_bnkd) * scale
    scores = scores.masked_fill(~visible_qk, float("-inf"))
    return torch.einsum("bnqk,bnkd->bnqd", scores.softmax(dim=-1), v_bnkd)


def _flatten(x_bhwnd: torch.Tensor) -> torch.Tensor:
    """``[B, *grid, n, d]`` -> ``[B, n, N, d]`` (tokens in raster order)."""
    b, *grid, n, d = x_bhwnd.shape
    return x_bhwnd.reshape(b, math.prod(grid), n, d).transpose(1, 2)


def topdown_visibility(layout: MultiScaleLayout, scale: int, num_key_scales: int, device: torch.device) -> torch.Tensor:
    """bool ``[N_q, sum_m N_m]``: which keys of scales ``scale .. scale + num_key_scales - 1`` each query sees."""
    q_coords = _coords(layout, scale, device)
    q_window = _window_ids(layout, scale, q_coords)
    blocks = []
    for m in range(scale, scale + num_key_scales):
        k_window = _window_ids(layout, m, _coords(layout, m, device))
        if m == scale:
            target = q_window
        else:
            levels = m - scale
            pooled = [c // s**levels for c, s in zip(q_coords, layout.stride)]
            target = _window_ids(layout, m, pooled)
        blocks.append(target[:, None] == k_window[None, :])
    return torch.cat(blocks, dim=1)


def bottomup_visibility(layout: MultiScaleLayout, scale: int, device: torch.device) -> torch.Tensor:
    """bool ``[N_scale, N_(scale-1)]``: which fine keys each coarse query of ``scale`` sees."""
    q_coords = _coords(layout, scale, device)
    source = _window_ids(layout, scale - 1, [c * s for c, s in zip(q_coords, layout.stride)])
    return source[:, None] == _window_ids(layout, scale - 1, _coords(layout, scale - 1, device))[None, :]


def reference_topdown_attention(
    q: torch.Tensor,
    keys: Sequence[torch.Tensor],
    values: Sequence[torch.Tensor],
    layout: MultiScaleLayout,
    scale: int,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """Top-down windowed attention of scale ``scale``; see :func:`atlas_vision.ops.topdown_attention`."""
    d = q.shape[-1]
    visible = topdown_visibility(layout, scale, len(keys), q.device)
    k_all = torch.cat([_flatten(k) for k in keys], dim=2)  # [B, n, sum N_m, d]
    v_all = torch.cat([_flatten(v) for v in values], dim=2)
    out = _dense_attention(_flatten(q), k_all, v_all, visible, softmax_scale or d**-0.5)  # [B, n, N, d]
    return out.transpose(1, 2).reshape(q.shape)


def reference_bottomup_attention(
    q: torch.Tensor,
    k_fine: torch.Tensor,
    v_fine: torch.Tensor,
    layout: MultiScaleLayout,
    scale: int,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """Bottom-up attention of scale ``scale`` into scale ``scale - 1``; see :func:`atlas_vision.ops.bottomup_attention`."""
    d = q.shape[-1]
    visible = bottomup_visibility(layout, scale, q.device)
    out = _dense_attention(_flatten(q), _flatten(k_fine), _flatten(v_fine), visible, softmax_scale or d**-0.5)
    return out.transpose(1, 2).reshape(q.shape)
