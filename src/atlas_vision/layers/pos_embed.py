"""Window-local position embedding (spec 1.3): an MLP of normalised in-window coordinates, added to every window.

Works for any window shape, square or not, so the same weights serve every image size: a multi-window scale gets the
same window-local pattern in each window, a single-window scale gets image-global coordinates of its whole grid.
"""

from __future__ import annotations

import torch
from torch import nn

from atlas_vision.ops import ScaleGeometry


def _axis_coords(side: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(i - side // 2) / max(side // 2, 1)`` for ``i`` in ``range(side)``: values in ``[-1, 1)``; 0 for side 1."""
    half = side // 2
    return (torch.arange(side, device=device, dtype=dtype) - half) / max(half, 1)


class WindowPosEmbed(nn.Module):
    """``Linear(2 -> hidden) -> ReLU -> Linear(hidden -> dim, no bias)`` of (row, col) coordinates inside a window.

    Args:
        dim: channels of the token map.
        hidden: hidden width of the MLP (512 in the reference code).
    """

    def __init__(self, dim: int, hidden: int, *, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.fc1 = nn.Linear(2, hidden, **dd)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, dim, bias=False, **dd)

    def forward(self, geometry: ScaleGeometry, like: torch.Tensor) -> torch.Tensor:
        """Embedding for a whole scale: ``[h, w, dim]`` (broadcasts over the batch of a ``[B, h, w, dim]`` map)."""
        kh, kw = geometry.window
        weight = self.fc1.weight
        rows = _axis_coords(kh, weight.device, weight.dtype)
        cols = _axis_coords(kw, weight.device, weight.dtype)
        coords = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1)  # [kh, kw, 2]
        emb = self.fc2(self.act(self.fc1(coords))).to(like.dtype)  # [kh, kw, dim]
        if not geometry.is_single_window:
            emb = emb.repeat(geometry.num_windows[0], geometry.num_windows[1], 1)  # [nh*kh, nw*kw, dim]
            emb = emb[: geometry.grid[0], : geometry.grid[1]]
        return emb
