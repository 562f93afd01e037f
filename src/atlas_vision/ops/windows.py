"""Window partition / merge of per-head token maps, with padding, and the matching key-validity masks.

Tensor layout in this module: ``x_bhwnd`` = ``[B, h, w, n_heads, d_head]`` (token map with heads split off); a
volume is ``[B, d, h, w, n_heads, d_head]`` -- every function takes any number of grid axes between ``B`` and the
heads, and every size argument has one entry per grid axis.
Windowed layout: ``x_bWntd`` = ``[B, num_windows, n_heads, tokens_per_window, d_head]`` with windows in raster order
and tokens in raster order inside a window -- the layout ``scaled_dot_product_attention`` wants once ``B`` and the
window axis are flattened.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from atlas_vision.ops.layout import SizeND


def pad_grid(x_bhwnd: torch.Tensor, padded: SizeND) -> torch.Tensor:
    """Zero-pad a ``[B, *grid, n, d]`` map at the far end of every grid axis (bottom/right) to ``padded``."""
    grid = tuple(x_bhwnd.shape[1:-2])
    if grid == tuple(padded):
        return x_bhwnd
    # F.pad pads the last dims first: (d: 0, 0), (n: 0, 0), then the grid axes from the last (w) to the first
    pads = [0, 0, 0, 0]
    for g, p in zip(reversed(grid), reversed(tuple(padded))):
        pads += [0, p - g]
    return F.pad(x_bhwnd, pads)


def window_partition(x_bhwnd: torch.Tensor, window: SizeND) -> torch.Tensor:
    """Cut a padded ``[B, *P, n, d]`` map into windows.

    Args:
        x_bhwnd: ``[B, H, W, n, d]`` (or ``[B, D, H, W, n, d]``) with every grid side divisible by the window side.
        window: ``(kh, kw)`` (or ``(kd, kh, kw)``).

    Returns:
        ``[B, (H/kh)*(W/kw), n, kh*kw, d]`` (windows and in-window tokens in raster order).
    """
    b, *padded, n, d = x_bhwnd.shape
    nd = len(window)
    counts = [p // k for p, k in zip(padded, window)]
    split = [size for c, k in zip(counts, window) for size in (c, k)]
    x = x_bhwnd.view(b, *split, n, d)  # [B, nh, kh, nw, kw, n, d] (2-D)
    # -> [B, nh, nw, n, kh, kw, d]
    x = x.permute(0, *(1 + 2 * i for i in range(nd)), 1 + 2 * nd, *(2 + 2 * i for i in range(nd)), 2 + 2 * nd)
    return x.reshape(b, math.prod(counts), n, math.prod(window), d)


def window_merge(x_bWntd: torch.Tensor, num_windows: SizeND, window: SizeND) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``[B, nh*nw, n, kh*kw, d]`` -> ``[B, nh*kh, nw*kw, n, d]``."""
    b, _, n, _, d = x_bWntd.shape
    nd = len(window)
    x = x_bWntd.view(b, *num_windows, n, *window, d)  # [B, nh, nw, n, kh, kw, d] (2-D)
    # -> [B, nh, kh, nw, kw, n, d]
    x = x.permute(0, *(dim for i in range(nd) for dim in (1 + i, 2 + nd + i)), 1 + nd, 2 + 2 * nd)
    return x.reshape(b, *(c * k for c, k in zip(num_windows, window)), n, d)


def to_windows(x_bhwnd: torch.Tensor, num_windows: SizeND, window: SizeND) -> torch.Tensor:
    """Pad ``[B, h, w, n, d]`` to ``num_windows * window`` and partition: ``[B, nh*nw, n, kh*kw, d]``."""
    padded = tuple(c * k for c, k in zip(num_windows, window))
    return window_partition(pad_grid(x_bhwnd, padded), window)


def from_windows(x_bWntd: torch.Tensor, num_windows: SizeND, window: SizeND, grid: SizeND) -> torch.Tensor:
    """Merge windows and crop the padding: ``[B, nh*nw, n, kh*kw, d]`` -> ``[B, h, w, n, d]`` with ``(h, w) = grid``."""
    x = window_merge(x_bWntd, num_windows, window)
    if tuple(x.shape[1:-2]) != tuple(grid):
        x = x[(slice(None), *(slice(0, g) for g in grid))]
    return x


def window_validity(grid: SizeND, num_windows: SizeND, window: SizeND, device: torch.device) -> torch.Tensor:
    """Which tokens of each window are real (not padding).

    Returns:
        bool ``[nh*nw, kh*kw]``: True where the token lies inside ``grid``.
    """
    nd = len(grid)
    valid = torch.ones((), dtype=torch.bool, device=device)
    for axis, (g, c, k) in enumerate(zip(grid, num_windows, window)):
        inside = torch.arange(c * k, device=device) < g  # [P_axis]
        valid = valid[..., None] & inside.view(*(1,) * axis, -1)  # [H, W] after both axes (2-D)
    split = [size for c, k in zip(num_windows, window) for size in (c, k)]
    valid = valid.view(*split)  # [nh, kh, nw, kw]
    valid = valid.permute(*(2 * i for i in range(nd)), *(2 * i + 1 for i in range(nd)))  # [nh, nw, kh, kw]
    return valid.reshape(math.prod(num_windows), math.prod(window))
