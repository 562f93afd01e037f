"""Non-overlapping window attention (Window-ViT; the paper's "WA" baseline, spec 1.1) as a token mixer.

Also holds the functional core :func:`windowed_attention`, which the shifted-window (Swin) mixer reuses with a
cyclic shift. Any grid works: the map is zero-padded at the bottom/right to a multiple of the window and padded
tokens are masked out of every attention, so the output never depends on the padding; along an axis where the grid
is no larger than the window, the window is clipped to the grid (one window along that axis, no padding).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from atlas_vision.mixers._common import QKVProjection, check_token_map
from atlas_vision.ops import Size2D, to_2tuple
from atlas_vision.ops.windows import from_windows, to_windows


def effective_window(grid: Size2D, window: Size2D, shift: Size2D) -> tuple[Size2D, Size2D]:
    """Clip the window to the grid; no shift along an axis that fits in one window (as Swin does).

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


def window_mask(grid: Size2D, window: Size2D, shift: Size2D, device: torch.device) -> torch.Tensor | None:
    """Key visibility of each window, or ``None`` when every key is visible (no padding, no shift).

    A query sees a key iff both lie in the same window of the (shifted) padded grid, in the same Swin region, and the
    key is a real token. The diagonal is always visible, so padded queries never get an empty row.

    Returns:
        bool ``[num_windows, K, K]`` (``K = kh * kw``; True = may attend) or ``None``.
    """
    kh, kw = window
    nh, nw = -(-grid[0] // kh), -(-grid[1] // kw)
    ph, pw = nh * kh, nw * kw
    if (ph, pw) == tuple(grid) and shift == (0, 0):
        return None
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
) -> torch.Tensor:
    """Multi-head attention inside non-overlapping (optionally cyclically shifted) windows.

    Args:
        q, k, v: ``[B, H, W, n, d]`` per-head maps.
        window: ``(kh, kw)``; clipped to the grid (see :func:`effective_window`).
        shift: ``(sh, sw)`` cyclic shift (Swin's ``k // 2`` on odd blocks), each in ``[0, k)``.
        softmax_scale: defaults to ``d ** -0.5``.

    Returns:
        ``[B, H, W, n, d]``.

    Equivalent computation: dense attention over all ``H * W`` tokens where query ``(y, x)`` sees key ``(y', x')``
    iff ``(y + k - s) // k == (y' + k - s) // k`` on both axes (with ``s = 0`` for unshifted windows): the shifted
    partition with its wrapped-around border windows split into their Swin regions.
    """
    grid = (q.shape[1], q.shape[2])
    window, shift = effective_window(grid, window, shift)
    if not all(0 <= s < w for s, w in zip(shift, window)):
        raise ValueError(f"shift {shift} must be in [0, window) for window {window}")
    kh, kw = window
    num_windows = (-(-grid[0] // kh), -(-grid[1] // kw))
    padded = (num_windows[0] * kh, num_windows[1] * kw)

    def prep(t: torch.Tensor) -> torch.Tensor:  # [B, H, W, n, d] -> [B, M, n, K, d]
        t = F.pad(t, (0, 0, 0, 0, 0, padded[1] - grid[1], 0, padded[0] - grid[0]))  # [B, Ph, Pw, n, d]
        if shift != (0, 0):
            t = torch.roll(t, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        return to_windows(t, num_windows, window)

    q_w, k_w, v_w = prep(q), prep(k), prep(v)
    b, m, n, t, d = q_w.shape
    mask = window_mask(grid, window, shift, q.device)  # [M, K, K] or None
    if mask is not None:
        mask = mask[None, :, None].expand(b, m, 1, t, t).reshape(b * m, 1, t, t)
    out = F.scaled_dot_product_attention(
        q_w.reshape(b * m, n, t, d),
        k_w.reshape(b * m, n, t, d),
        v_w.reshape(b * m, n, t, d),
        attn_mask=mask,
        scale=softmax_scale,
    )  # [B*M, n, K, d]
    out = from_windows(out.view(b, m, n, t, d), num_windows, window, padded)  # [B, Ph, Pw, n, d]
    if shift != (0, 0):
        out = torch.roll(out, shifts=shift, dims=(1, 2))
    return out[:, : grid[0], : grid[1]]


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping ``kh x kw`` windows (no cross-window communication).

    Args:
        dim: channels ``C``.
        num_heads: heads (must divide ``dim``).
        window: window side ``k`` or ``(kh, kw)``, each >= 1.
        qkv_bias: bias on the q/k/v projection.

    Shapes: ``[B, H, W, C]`` -> ``[B, H, W, C]`` for any ``H, W >= 1``.

    Example:
        >>> mixer = WindowAttention(dim=32, num_heads=4, window=8)
        >>> mixer(torch.randn(2, 13, 20, 32)).shape
        torch.Size([2, 13, 20, 32])
    """

    def __init__(self, dim: int, num_heads: int, window: int | Size2D, qkv_bias: bool = True):
        super().__init__()
        self.dim = dim
        self.window = to_2tuple(window, "window")
        if min(self.window) < 1:
            raise ValueError(f"window must be >= 1 on each side, got {self.window}")
        self.attn = QKVProjection(dim, num_heads, qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_token_map(x, self.dim, type(self).__name__)
        q, k, v = self.attn.split(x)  # each [B, H, W, n, d]
        return self.attn.merge(windowed_attention(q, k, v, self.window))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window={self.window}"
