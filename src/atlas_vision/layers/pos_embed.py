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
    """``Linear(ndim -> hidden) -> ReLU -> Linear(hidden -> dim, no bias)`` of in-window coordinates: (row, col) for
    images, (slice, row, col) for volumes.

    Args:
        dim: channels of the token map.
        hidden: hidden width of the MLP (512 in the reference code).
        ndim: axes of the token grid (2 for images, 3 for volumes).
    """

    def __init__(
        self,
        dim: int,
        hidden: int,
        *,
        ndim: int = 2,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.ndim = ndim
        self.fc1 = nn.Linear(ndim, hidden, **dd)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, dim, bias=False, **dd)

    def forward(self, geometry: ScaleGeometry, like: torch.Tensor) -> torch.Tensor:
        """Embedding for a whole scale: ``[h, w, dim]`` (broadcasts over the batch of a ``[B, h, w, dim]`` map); a
        3-D scale gets ``[d, h, w, dim]``."""
        if geometry.ndim != self.ndim:
            raise ValueError(
                f"this position embedding is for {self.ndim}-D token grids, got a {geometry.ndim}-D scale "
                f"{geometry.grid}"
            )
        weight = self.fc1.weight
        axes = [_axis_coords(k, weight.device, weight.dtype) for k in geometry.window]
        coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # [kh, kw, 2] ([kd, kh, kw, 3])
        emb = self.fc2(self.act(self.fc1(coords))).to(like.dtype)  # [kh, kw, dim]
        if not geometry.is_single_window:
            emb = emb.repeat(*geometry.num_windows, 1)  # [nh*kh, nw*kw, dim]
            emb = emb[tuple(slice(0, g) for g in geometry.grid)]
        return emb
