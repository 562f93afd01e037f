"""The floor of the slide heads: mean of the tissue cells' features, then one linear layer."""

from __future__ import annotations

import torch
from timm.layers import trunc_normal_
from torch import nn

from atlas_vision.slidelearn.grid_input import split_grid


class MeanPoolHead(nn.Module):
    """``[B, C + 1, H, W]`` (features + mask, see :mod:`~atlas_vision.slidelearn.grid_input`) -> logits
    ``[B, num_classes]``: masked mean over tissue cells, optional dropout, ``Linear(C, num_classes)``.

    A slide without tissue cells pools to the zero vector.
    """

    def __init__(self, in_chans: int, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        if in_chans < 2:
            raise ValueError(f"in_chans must be >= 2 (features + 1 mask channel), got {in_chans}")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.num_features = self.head_hidden_size = in_chans - 1
        self.drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if isinstance(self.head, nn.Linear):
            trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Masked mean ``[B, C]``."""
        features, valid = split_grid(x, self.in_chans)  # [B, C, H, W], [B, H, W]
        weight = valid.to(features.dtype)
        total = torch.einsum("bchw,bhw->bc", features, weight)
        return total / weight.flatten(1).sum(dim=1, keepdim=True).clamp_min(1.0)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        del global_pool  # the pooling is the masked mean by definition
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        self.reset_parameters()
