"""Window partition / merge of per-head token maps, with padding, and the matching key-validity masks.

Tensor layout in this module: ``x_bhwnd`` = ``[B, h, w, n_heads, d_head]`` (token map with heads split off).
Windowed layout: ``x_bWntd`` = ``[B, num_windows, n_heads, tokens_per_window, d_head]`` with windows in raster order
and tokens in raster order inside a window -- the layout ``scaled_dot_product_attention`` wants once ``B`` and the
window axis are flattened.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from atlas_vision.ops.layout import Size2D


def pad_grid(x_bhwnd: torch.Tensor, padded: Size2D) -> torch.Tensor:
    """Zero-pad a ``[B, h, w, n, d]`` map at the bottom/right to ``padded = (H, W)``."""
    h, w = x_bhwnd.shape[1], x_bhwnd.shape[2]
    if (h, w) == tuple(padded):
        return x_bhwnd
    # F.pad pads the last dims first: (d: 0, 0), (n: 0, 0), (w: 0, W - w), (h: 0, H - h)
    return F.pad(x_bhwnd, (0, 0, 0, 0, 0, padded[1] - w, 0, padded[0] - h))


def window_partition(x_bhwnd: torch.Tensor, window: Size2D) -> torch.Tensor:
    """Cut a padded ``[B, H, W, n, d]`` map into windows.

    Args:
        x_bhwnd: ``[B, H, W, n, d]`` with ``H % kh == 0`` and ``W % kw == 0``.
        window: ``(kh, kw)``.

    Returns:
        ``[B, (H/kh)*(W/kw), n, kh*kw, d]``.
    """
    b, hh, ww, n, d = x_bhwnd.shape
    kh, kw = window
    nh, nw = hh // kh, ww // kw
    x = x_bhwnd.view(b, nh, kh, nw, kw, n, d)  # [B, nh, kh, nw, kw, n, d]
    x = x.permute(0, 1, 3, 5, 2, 4, 6)  # [B, nh, nw, n, kh, kw, d]
    return x.reshape(b, nh * nw, n, kh * kw, d)


def window_merge(x_bWntd: torch.Tensor, num_windows: Size2D, window: Size2D) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``[B, nh*nw, n, kh*kw, d]`` -> ``[B, nh*kh, nw*kw, n, d]``."""
    b, _, n, _, d = x_bWntd.shape
    nh, nw = num_windows
    kh, kw = window
    x = x_bWntd.view(b, nh, nw, n, kh, kw, d)  # [B, nh, nw, n, kh, kw, d]
    x = x.permute(0, 1, 4, 2, 5, 3, 6)  # [B, nh, kh, nw, kw, n, d]
    return x.reshape(b, nh * kh, nw * kw, n, d)


def to_windows(x_bhwnd: torch.Tensor, num_windows: Size2D, window: Size2D) -> torch.Tensor:
    """Pad ``[B, h, w, n, d]`` to ``num_windows * window`` and partition: ``[B, nh*nw, n, kh*kw, d]``."""
    padded = (num_windows[0] * window[0], num_windows[1] * window[1])
    return window_partition(pad_grid(x_bhwnd, padded), window)


def from_windows(x_bWntd: torch.Tensor, num_windows: Size2D, window: Size2D, grid: Size2D) -> torch.Tensor:
    """Merge windows and crop the padding: ``[B, nh*nw, n, kh*kw, d]`` -> ``[B, h, w, n, d]`` with ``(h, w) = grid``."""
    x = window_merge(x_bWntd, num_windows, window)
    if tuple(x.shape[1:3]) != tuple(grid):
        x = x[:, : grid[0], : grid[1]]
    return x


def window_validity(grid: Size2D, num_windows: Size2D, window: Size2D, device: torch.device) -> torch.Tensor:
    """Which tokens of each window are real (not padding).

    Returns:
        bool ``[nh*nw, kh*kw]``: True where the token lies inside ``grid``.
    """
    padded = (num_windows[0] * window[0], num_windows[1] * window[1])
    rows = torch.arange(padded[0], device=device) < grid[0]
    cols = torch.arange(padded[1], device=device) < grid[1]
    valid_hw = rows[:, None] & cols[None, :]  # [H, W]
    valid = valid_hw.view(num_windows[0], window[0], num_windows[1], window[1])  # [nh, kh, nw, kw]
    return valid.permute(0, 2, 1, 3).reshape(num_windows[0] * num_windows[1], window[0] * window[1])
