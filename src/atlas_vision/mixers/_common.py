"""Pieces shared by the attention-based token mixers: input checks and the q/k/v + output projections.

Token maps are ``[B, H, W, C]`` (channels last); per-head maps are ``[B, H, W, n_heads, d_head]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def check_token_map(x: torch.Tensor, dim: int, name: str) -> None:
    """Raise a ``ValueError`` unless ``x`` is a non-empty ``[B, H, W, dim]`` tensor."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} expects a token map [B, H, W, C], got {shape}")
    if x.shape[-1] != dim:
        raise ValueError(f"{name} was built for C={dim} channels, got a map with {x.shape[-1]} ({tuple(x.shape)})")
    if x.shape[0] < 1 or x.shape[1] < 1 or x.shape[2] < 1:
        raise ValueError(f"{name} got an empty token map {tuple(x.shape)}")


def check_heads(dim: int, num_heads: int, name: str) -> None:
    """Raise a ``ValueError`` unless ``num_heads >= 1`` divides ``dim``."""
    if dim < 1 or num_heads < 1 or dim % num_heads:
        raise ValueError(f"{name}: dim={dim} must be a positive multiple of num_heads={num_heads}")


class QKVProjection(nn.Module):
    """``Linear(C -> 3C)`` split into per-head q, k, v maps, and the ``Linear(C -> C)`` output projection.

    Args:
        dim: channels ``C``.
        num_heads: heads ``n`` (``d_head = C / n``).
        qkv_bias: bias on the q/k/v projection.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        check_heads(dim, num_heads, type(self).__name__)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[..., C]`` -> ``(q, k, v)``, each ``[..., n, d]``."""
        qkv = self.qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim))  # [..., 3, n, d]
        return qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]

    def keys_values(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[..., C]`` -> ``(k, v)``, each ``[..., n, d]``: the k and v rows of the projection only (no queries)."""
        dim = self.num_heads * self.head_dim
        bias = None if self.qkv.bias is None else self.qkv.bias[dim:]
        kv = F.linear(x, self.qkv.weight[dim:], bias).unflatten(
            -1, (2, self.num_heads, self.head_dim)
        )  # [..., 2, n, d]
        return kv[..., 0, :, :], kv[..., 1, :, :]

    def merge(self, out: torch.Tensor) -> torch.Tensor:
        """``[..., n, d]`` -> ``[..., C]`` through the output projection."""
        return self.proj(out.flatten(-2))
