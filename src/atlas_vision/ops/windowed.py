"""Windowed attention: the one implementation behind window / Swin / HAT mixers and the SDPA backend of MSA.

Two levels:

* :func:`attend_windows` -- attention of already-partitioned windows, folded into the batch axis of one
  ``F.scaled_dot_product_attention`` call, under an optional boolean mask (per-window key validity ``[W, S]`` or
  full visibility ``[W, T, S]``). The SDPA backend of the MSA ops (:mod:`atlas_vision.ops.sdpa`) calls it with the
  keys of a window's ancestors lined up behind its own.
* :func:`windowed_attention` -- self-attention of a ``[B, H, W, n, d]`` map inside non-overlapping windows: pads the
  map to a multiple of the window, masks the padding, optionally shifts the windows cyclically (Swin) and optionally
  puts extra per-window keys in front of every window's own (HAT's carrier tokens, :class:`WindowContext`).

Swin's region mask lives here rather than in :mod:`atlas_vision.mixers.swin` because it is a property of the shifted
*partition* that this function builds (which rolled tokens share a window but were never neighbours); the mixer only
chooses the shift.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from atlas_vision.ops.layout import Size2D, ceil_div
from atlas_vision.ops.windows import from_windows, to_windows, window_validity


def attend_windows(
    q_bWntd: torch.Tensor,
    k_bWnsd: torch.Tensor,
    v_bWnsd: torch.Tensor,
    visible: torch.Tensor | None = None,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """Softmax attention inside each window, windows folded into the batch.

    Args:
        q_bWntd: ``[B, W, n, T, d]`` queries of ``W`` windows.
        k_bWnsd: ``[B, W, n, S, d]`` keys of each window (``S`` may differ from ``T``).
        v_bWnsd: values, same shape as the keys.
        visible: ``None`` (every key visible), bool ``[W, S]`` (key validity per window) or bool ``[W, T, S]``
            (visibility per query); every query row must see at least one key.
        softmax_scale: defaults to ``d ** -0.5``.

    Returns:
        ``[B, W, n, T, d]``.
    """
    b, nw, n, t, d = q_bWntd.shape
    s = k_bWnsd.shape[3]
    mask = None
    if visible is not None:
        if visible.dim() == 2:  # [W, S] -> [B*W, 1, 1, S]
            mask = visible[None, :, None, None, :].expand(b, nw, 1, 1, s).reshape(b * nw, 1, 1, s)
        else:  # [W, T, S] -> [B*W, 1, T, S]
            mask = visible[None, :, None].expand(b, nw, 1, t, s).reshape(b * nw, 1, t, s)
    out = F.scaled_dot_product_attention(
        q_bWntd.reshape(b * nw, n, t, d),
        k_bWnsd.reshape(b * nw, n, s, d),
        v_bWnsd.reshape(b * nw, n, s, d),
        attn_mask=mask,
        scale=softmax_scale,
    )  # [B*W, n, T, d]
    return out.view(b, nw, n, t, d)


class WindowContext(NamedTuple):
    """Extra keys every window's queries see in front of the window's own tokens (HAT's carrier tokens).

    Attributes:
        keys: ``[B, M, n, S_c, d]``, one block of ``S_c`` keys per window of the partition (raster order).
        values: same shape as ``keys``.
        valid: bool ``[M, S_c]`` (False = masked out) or ``None`` (all valid).
    """

    keys: torch.Tensor
    values: torch.Tensor
    valid: torch.Tensor | None = None


def fit_window(grid: Size2D, window: Size2D, shift: Size2D = (0, 0)) -> tuple[Size2D, Size2D]:
    """Clip the window to the grid; no shift along an axis that fits in one window (as Swin does).

    Clipping never changes which tokens share a window (an axis no longer than the window is one window either way);
    it only avoids padding.

    Returns:
        ``(window, shift)`` actually used for this grid.
    """
    kh, kw = min(window[0], grid[0]), min(window[1], grid[1])
    sh = shift[0] if grid[0] > window[0] else 0
    sw = shift[1] if grid[1] > window[1] else 0
    return (kh, kw), (sh, sw)


def _axis_region(padded: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """Swin's region label of each position of the rolled (shifted) axis: 0, 1, 2 for the slices
    ``[0, P-k)``, ``[P-k, P-s)``, ``[P-s, P)``; all 0 when ``shift == 0``."""
    pos = torch.arange(padded, device=device)
    if shift == 0:
        return torch.zeros_like(pos)
    return (pos >= padded - window).long() + (pos >= padded - shift).long()


def shifted_window_visibility(grid: Size2D, window: Size2D, shift: Size2D, device: torch.device) -> torch.Tensor:
    """Query/key visibility of each window of the cyclically shifted, padded partition (Swin's region mask).

    A query sees a key iff both lie in the same window of the rolled padded grid, in the same Swin region, and the key
    is a real token. The diagonal is always visible, so a padded query never gets an empty row.

    Returns:
        bool ``[num_windows, K, K]`` (``K = kh * kw``; True = may attend).
    """
    kh, kw = window
    nh, nw = ceil_div(grid[0], kh), ceil_div(grid[1], kw)
    ph, pw = nh * kh, nw * kw
    sh, sw = shift
    rows_valid = torch.roll(torch.arange(ph, device=device) < grid[0], -sh)  # validity in the rolled frame
    cols_valid = torch.roll(torch.arange(pw, device=device) < grid[1], -sw)
    valid = rows_valid[:, None] & cols_valid[None, :]  # [Ph, Pw]
    region = _axis_region(ph, kh, sh, device)[:, None] * 3 + _axis_region(pw, kw, sw, device)[None, :]  # [Ph, Pw]

    def windows(t: torch.Tensor) -> torch.Tensor:  # [Ph, Pw] -> [nh*nw, K]
        return t.view(nh, kh, nw, kw).permute(0, 2, 1, 3).reshape(nh * nw, kh * kw)

    valid_w, region_w = windows(valid), windows(region)
    mask = (region_w[:, :, None] == region_w[:, None, :]) & valid_w[:, None, :]  # [M, K(q), K(k)]
    return mask | torch.eye(kh * kw, dtype=torch.bool, device=device)


def windowed_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: Size2D,
    shift: Size2D = (0, 0),
    softmax_scale: float | None = None,
    *,
    context: WindowContext | None = None,
) -> torch.Tensor:
    """Multi-head self-attention inside non-overlapping (optionally cyclically shifted) windows of a token map.

    Args:
        q, k, v: ``[B, H, W, n, d]`` per-head maps.
        window: ``(kh, kw)``; clipped to the grid (see :func:`fit_window`).
        shift: ``(sh, sw)`` cyclic shift (Swin's ``k // 2`` on odd blocks), each in ``[0, k)``.
        softmax_scale: defaults to ``d ** -0.5``.
        context: extra keys per window, attended in front of the window's own keys (only without a shift).

    Returns:
        ``[B, H, W, n, d]``.

    Equivalent computation: dense attention over all ``H * W`` tokens (plus the context keys of the query's window)
    where query ``(y, x)`` sees key ``(y', x')`` iff ``(y + k - s) // k == (y' + k - s) // k`` on both axes (with
    ``s = 0`` for unshifted windows): the shifted partition with its wrapped-around border windows split into their
    Swin regions. Padding never changes the result.

    Example:
        >>> q = torch.randn(2, 13, 20, 4, 8)
        >>> windowed_attention(q, q, q, (8, 8), shift=(4, 4)).shape
        torch.Size([2, 13, 20, 4, 8])
    """
    if q.dim() != 5 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(
            f"q, k, v must be [B, H, W, n_heads, d_head] maps of one shape, got {tuple(q.shape)}, {tuple(k.shape)}, "
            f"{tuple(v.shape)}"
        )
    grid = (q.shape[1], q.shape[2])
    window, shift = fit_window(grid, window, shift)
    if not all(0 <= s < w for s, w in zip(shift, window)):
        raise ValueError(f"shift {shift} must be in [0, window) for window {window}")
    shifted = shift != (0, 0)
    if shifted and context is not None:
        raise ValueError("windowed_attention: context keys are only supported for unshifted windows")
    kh, kw = window
    num_windows = (ceil_div(grid[0], kh), ceil_div(grid[1], kw))
    padded = (num_windows[0] * kh, num_windows[1] * kw)
    needs_padding = padded != grid

    def prep(t: torch.Tensor) -> torch.Tensor:  # [B, H, W, n, d] -> [B, M, n, K, d]
        if shifted:
            t = F.pad(t, (0, 0, 0, 0, 0, padded[1] - grid[1], 0, padded[0] - grid[0]))  # [B, Ph, Pw, n, d]
            t = torch.roll(t, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        return to_windows(t, num_windows, window)

    q_w, k_w, v_w = prep(q), prep(k), prep(v)
    visible: torch.Tensor | None = None
    if shifted:
        visible = shifted_window_visibility(grid, window, shift, q.device)  # [M, K, K]
    elif needs_padding:
        visible = window_validity(grid, num_windows, window, q.device)  # [M, K]
    if context is not None:
        m = num_windows[0] * num_windows[1]
        if context.keys.shape[:3] != q_w.shape[:3] or context.values.shape != context.keys.shape:
            raise ValueError(
                f"context keys/values must be [B, M={m}, n, S_c, d] like the windowed queries {tuple(q_w.shape)}, "
                f"got {tuple(context.keys.shape)} and {tuple(context.values.shape)}"
            )
        k_w = torch.cat([context.keys, k_w], dim=3)  # [B, M, n, S_c + K, d]
        v_w = torch.cat([context.values, v_w], dim=3)
        if context.valid is not None or visible is not None:

            def all_valid(tokens: int) -> torch.Tensor:
                return torch.ones(m, tokens, dtype=torch.bool, device=q.device)

            ctx_valid = context.valid if context.valid is not None else all_valid(context.keys.shape[3])
            own_valid = visible if visible is not None else all_valid(kh * kw)
            visible = torch.cat([ctx_valid, own_valid], dim=1)  # [M, S_c + K]
    out = attend_windows(q_w, k_w, v_w, visible, softmax_scale)  # [B, M, n, K, d]
    if not shifted:
        return from_windows(out, num_windows, window, grid)
    out = from_windows(out, num_windows, window, padded)  # [B, Ph, Pw, n, d]
    out = torch.roll(out, shifts=shift, dims=(1, 2))
    return out[:, : grid[0], : grid[1]]
