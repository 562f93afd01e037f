"""Global multi-head self-attention over all tokens (ViT, Dosovitskiy et al. 2021) as a token mixer.

Cost O(N^2) in the number of tokens ``N = H * W``; runs through ``F.scaled_dot_product_attention`` (flash /
memory-efficient kernels where PyTorch has them for the device and dtype).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from atlas_vision.mixers._common import QKVProjection, check_token_map


class GlobalAttention(nn.Module):
    """Every token attends to every token of its image.

    Args:
        dim: channels ``C``.
        num_heads: heads (must divide ``dim``).
        qkv_bias: bias on the q/k/v projection.

    Shapes: ``[B, H, W, C]`` -> ``[B, H, W, C]``.

    Example:
        >>> GlobalAttention(dim=32, num_heads=4)(torch.randn(3, 5, 7, 32)).shape
        torch.Size([3, 5, 7, 32])
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.dim = dim
        self.attn = QKVProjection(dim, num_heads, qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_token_map(x, self.dim, type(self).__name__)
        _, h, w, _ = x.shape
        q, k, v = (t.flatten(1, 2).transpose(1, 2) for t in self.attn.split(x))  # each [B, n, N, d]
        out = F.scaled_dot_product_attention(q, k, v)  # [B, n, N, d]
        return self.attn.merge(out.transpose(1, 2).unflatten(1, (h, w)))  # [B, H, W, C]

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
