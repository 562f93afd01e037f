"""Non-overlapping window attention (Window-ViT; the paper's "WA" baseline, spec 1.1) as a token mixer.

The attention itself is :func:`atlas_vision.ops.windowed_attention` (shared with the Swin and HAT mixers and the SDPA
backend of MSA). Any grid works: the map is zero-padded at the bottom/right to a multiple of the window and padded
tokens are masked out of every attention, so the output never depends on the padding; along an axis where the grid
is no larger than the window, the window is clipped to the grid (one window along that axis, no padding).
"""

from __future__ import annotations

import torch
from torch import nn

from atlas_vision.mixers._common import QKVProjection, check_token_map
from atlas_vision.ops import Size2D, to_2tuple, windowed_attention


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
