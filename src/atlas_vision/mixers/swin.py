"""Shifted-window attention (Swin, Liu et al. 2021, arXiv 2103.14030) as a token mixer.

Blocks alternate between regular windows and windows cyclically shifted by ``(kh // 2, kw // 2)``; in a shifted
block the map is rolled, attended in windows under Swin's region mask (tokens that wrapped around the border never
see tokens they were not adjacent to), and rolled back -- all inside :func:`atlas_vision.ops.windowed_attention`. Padding for grids that do not divide by the window is masked
as in :class:`~atlas_vision.mixers.window.WindowAttention`. No relative position bias: every mixer of the benchmark
network shares the same position encoding (see :mod:`atlas_vision.mixers.net`).
"""

from __future__ import annotations

import torch
from torch import nn

from atlas_vision.mixers._common import QKVProjection, check_token_map
from atlas_vision.ops import Size2D, to_2tuple, windowed_attention


class ShiftedWindowAttention(nn.Module):
    """Window attention whose windows are shifted by half a window when ``shifted`` is True.

    Args:
        dim: channels ``C``.
        num_heads: heads (must divide ``dim``).
        window: window side ``k`` or ``(kh, kw)``, each >= 1.
        shifted: shift this block's windows by ``(kh // 2, kw // 2)`` (Swin uses it on every odd block; see
            :meth:`for_block`).
        qkv_bias: bias on the q/k/v projection.

    Shapes: ``[B, H, W, C]`` -> ``[B, H, W, C]`` for any ``H, W >= 1``.

    Example:
        >>> blocks = [ShiftedWindowAttention.for_block(i, dim=32, num_heads=4, window=8) for i in range(2)]
        >>> [b.shift for b in blocks]
        [(0, 0), (4, 4)]
    """

    def __init__(self, dim: int, num_heads: int, window: int | Size2D, shifted: bool, qkv_bias: bool = True):
        super().__init__()
        self.dim = dim
        self.window = to_2tuple(window, "window")
        if min(self.window) < 1:
            raise ValueError(f"window must be >= 1 on each side, got {self.window}")
        self.shift: Size2D = (self.window[0] // 2, self.window[1] // 2) if shifted else (0, 0)
        self.attn = QKVProjection(dim, num_heads, qkv_bias)

    @classmethod
    def for_block(
        cls, block_index: int, dim: int, num_heads: int, window: int | Size2D, qkv_bias: bool = True
    ) -> ShiftedWindowAttention:
        """The mixer of block ``block_index`` of a Swin stack: regular windows on even, shifted on odd blocks."""
        return cls(dim, num_heads, window, shifted=block_index % 2 == 1, qkv_bias=qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_token_map(x, self.dim, type(self).__name__)
        q, k, v = self.attn.split(x)  # each [B, H, W, n, d]
        return self.attn.merge(windowed_attention(q, k, v, self.window, self.shift))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window={self.window}, shift={self.shift}"
