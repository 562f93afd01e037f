"""Attention-based multiple-instance learning with gated attention (Ilse, Tomczak & Welling, ICML 2018).

Every tissue cell of the grid is an instance. For instance features ``x_i``:

    h_i = ReLU(W_1 x_i)                                    (embedding, ``hidden_dim``)
    s_i = w^T (tanh(V h_i) * sigmoid(U h_i))               (gated attention score)
    a   = softmax over the tissue cells of s               (padding and background get weight 0)
    z   = sum_i a_i h_i,   logits = Linear(z)

Each instance is scored on its own features, so the bag embedding ``z`` lies in the convex hull of the instance
embeddings -- the property the synthetic slide task (``docs/slide-learning.md``) is built to defeat.
"""

from __future__ import annotations

import torch
from timm.layers import trunc_normal_
from torch import nn

from atlas_vision.slidelearn.grid_input import split_grid


class GatedAttention(nn.Module):
    """Scores ``[B, N, D]`` -> ``[B, N]`` (before the softmax): ``w^T (tanh(V h) * sigmoid(U h))``."""

    def __init__(self, dim: int, attn_dim: int):
        super().__init__()
        self.value = nn.Linear(dim, attn_dim)
        self.gate = nn.Linear(dim, attn_dim)
        self.score = nn.Linear(attn_dim, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.score(torch.tanh(self.value(h)) * torch.sigmoid(self.gate(h))).squeeze(-1)


class ABMILHead(nn.Module):
    """``[B, C + 1, H, W]`` (features + mask) -> logits ``[B, num_classes]`` by gated-attention MIL.

    Args:
        in_chans: feature channels + 1 (the mask channel).
        num_classes: classes; 0 = return the bag embedding.
        hidden_dim: instance embedding width (``W_1``).
        attn_dim: width of the gated attention (``V``, ``U``).
        drop_rate: dropout on the instance embeddings.
    """

    def __init__(
        self, in_chans: int, num_classes: int, hidden_dim: int = 128, attn_dim: int = 64, drop_rate: float = 0.0
    ):
        super().__init__()
        if in_chans < 2:
            raise ValueError(f"in_chans must be >= 2 (features + 1 mask channel), got {in_chans}")
        for name, value in (("hidden_dim", hidden_dim), ("attn_dim", attn_dim)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = hidden_dim
        self.embed = nn.Sequential(nn.Linear(in_chans - 1, hidden_dim), nn.ReLU(), nn.Dropout(drop_rate))
        self.attention = GatedAttention(hidden_dim, attn_dim)
        self.head = nn.Linear(hidden_dim, num_classes) if num_classes else nn.Identity()
        self.apply(_init_linear)

    def attention_weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Instance embeddings ``[B, H*W, D]`` and attention weights ``[B, H, W]`` (0 off tissue; a slide
        without tissue gets all-zero weights)."""
        features, valid = split_grid(x, self.in_chans)  # [B, C, H, W], [B, H, W]
        tokens = features.flatten(2).transpose(1, 2)  # [B, N = H*W, C]
        h = self.embed(tokens)  # [B, N, D]
        valid = valid.flatten(1)  # [B, N]
        has_tissue = valid.any(dim=1, keepdim=True)  # [B, 1]
        # masked softmax; a slide without tissue gets scores 0 (finite gradients) and then weights 0
        scores = self.attention(h).masked_fill(~valid & has_tissue, float("-inf"))  # [B, N]
        weights = torch.softmax(scores, dim=1) * has_tissue
        return h, weights.view(x.shape[0], x.shape[2], x.shape[3])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Bag embedding ``[B, D]``."""
        h, weights = self.attention_weights(x)
        return torch.einsum("bnd,bn->bd", h, weights.flatten(1))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        del global_pool  # the pooling is the attention by definition
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        self.head.apply(_init_linear)


def _init_linear(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
