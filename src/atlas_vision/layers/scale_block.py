"""The per-scale transformer block of an MSA block (the reference code's ``CrossWindowBlock``, spec 1.6).

One instance owns, for one scale: the position embedding, separate LayerNorms for queries and for keys/values, the
query and key/value projections, the output projection, and the MLP. The same instance serves the top-down and the
bottom-up update of its scale; K/V of a scale are always made by that scale's own block, whoever queries them.
"""

from __future__ import annotations

import torch
from timm.layers import DropPath, Mlp
from torch import nn

from atlas_vision.layers.pos_embed import WindowPosEmbed


class ScaleBlock(nn.Module):
    """Projections, residual updates and MLP of one scale.

    Token maps are ``[B, h, w, C]``; per-head maps are ``[B, h, w, n_heads, C // n_heads]`` (volumes: ``[B, d, h, w,
    ...]``; every method works on the last axis only).

    Args:
        dim: channels ``C``.
        num_heads: attention heads; must divide ``dim``.
        mlp_ratio: MLP hidden width = ``mlp_ratio * dim``.
        qkv_bias: bias on the query and key/value projections.
        drop_path: stochastic-depth rate of both residual branches.
        pos_embed_hidden: hidden width of the position-embedding MLP.
        ndim: axes of the token grid (2 for images, 3 for volumes): the position embedding's coordinates.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_path: float,
        pos_embed_hidden: int,
        *,
        ndim: int = 2,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.pos_embed = WindowPosEmbed(dim, pos_embed_hidden, ndim=ndim, **dd)
        self.norm_q = nn.LayerNorm(dim, **dd)
        self.norm_kv = nn.LayerNorm(dim, **dd)
        self.q = nn.Linear(dim, dim, bias=qkv_bias, **dd)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias, **dd)
        self.proj = nn.Linear(dim, dim, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, **dd)
        self.mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU, **dd)

    def queries(self, x_bhwc: torch.Tensor) -> torch.Tensor:
        """``[B, h, w, C]`` -> ``[B, h, w, n, d]``."""
        q = self.q(self.norm_q(x_bhwc))
        return q.unflatten(-1, (self.num_heads, self.head_dim))

    def keys_values(self, x_bhwc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, h, w, C]`` -> (K, V), each ``[B, h, w, n, d]``."""
        kv = self.kv(self.norm_kv(x_bhwc)).unflatten(-1, (2, self.num_heads, self.head_dim))  # [B, h, w, 2, n, d]
        # unbind, not two selects: its backward stacks the two gradients in one copy, where each select's backward
        # would zero-fill a full [B, h, w, 2, n, d] buffer and autograd would then add the two.
        k, v = kv.unbind(-3)
        return k, v

    def update(self, x_bhwc: torch.Tensor, attn_bhwnd: torch.Tensor) -> torch.Tensor:
        """Residual updates after one attention: ``x + DropPath(proj(attn))``, then ``x + DropPath(MLP(LN(x)))``."""
        x_bhwc = x_bhwc + self.drop_path(self.proj(attn_bhwnd.flatten(-2)))
        return x_bhwc + self.drop_path(self.mlp(self.norm2(x_bhwc)))
