"""The FasterViT-style convolutional stem of Atlas (spec 2.2), for patch sizes 4, 8, 16, 32.

``conv0`` (two stride-2 3x3 convs, /4) then, per further factor 2, a stage of residual conv blocks followed by a
LayerNorm2d + stride-2 3x3 conv that doubles the width. For patch 16 and ``embed_dim`` 768 this is exactly the
reference stem: 3 -> 64 -> 192 (/4), 3 blocks @192, -> 384 (/8), 3 blocks @384, -> 768 (/16).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from atlas_vision.layers.checkpointing import run_stem_units
from atlas_vision.layers.contiguous import ContiguousLayerNorm2d, contiguous_gradient, stem_memory_format
from atlas_vision.layers.conv3x3 import Conv3x3


class ConvResBlock(nn.Module):
    """``x + BN(Conv3x3(GELU(BN(Conv3x3(x)))))`` (FasterViT's ConvBlock without layer scale)."""

    def __init__(self, dim: int, *, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.conv1 = Conv3x3(dim, dim, **dd)
        self.norm1 = nn.BatchNorm2d(dim, eps=1e-5, **dd)
        self.act = nn.GELU()
        self.conv2 = Conv3x3(dim, dim, **dd)
        self.norm2 = nn.BatchNorm2d(dim, eps=1e-5, **dd)

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        return x_bchw + self.norm2(self.conv2(self.act(self.norm1(self.conv1(x_bchw)))))


class ConvStem(nn.Module):
    """Image ``[B, in_chans, H, W]`` -> token map ``[B, ceil(H/P), ceil(W/P), embed_dim]``.

    Args:
        in_chans: input channels (1 for grey, 3 for RGB, more for multispectral).
        embed_dim: output channels ``C``; must be divisible by ``2 ** (log2(P) - 2)``.
        patch_size: total stride ``P``, a power of two in [4, 32].
        hidden: width of the first conv (64 in the reference).
        depth: residual blocks per stem stage (3 in the reference).
    """

    def __init__(
        self,
        in_chans: int,
        embed_dim: int,
        patch_size: int,
        hidden: int,
        depth: int,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        num_stages = int(math.log2(patch_size)) - 2
        width = embed_dim // 2**num_stages
        self.patch_size = patch_size
        self.conv0 = nn.Sequential(
            nn.Conv2d(in_chans, hidden, 3, stride=2, padding=1, bias=False, **dd),
            nn.BatchNorm2d(hidden, eps=1e-4, **dd),
            nn.ReLU(),
            nn.Conv2d(hidden, width, 3, stride=2, padding=1, bias=False, **dd),
            nn.BatchNorm2d(width, eps=1e-4, **dd),
            nn.ReLU(),
        )
        stages = []
        for _ in range(num_stages):
            stages.append(
                nn.Sequential(
                    *[ConvResBlock(width, **dd) for _ in range(depth)],
                    ContiguousLayerNorm2d(width, **dd),
                    nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False, **dd),
                )
            )
            width *= 2
        self.stages = nn.Sequential(*stages)
        self.grad_checkpointing = False  # recompute each unit in backward (layers/checkpointing.py)

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        layout = stem_memory_format(x_bchw)  # NCHW; channels-last under CPU autocast (layers/contiguous.py)
        x_bchw = x_bchw.contiguous(memory_format=layout)
        # conv0, then the stages: [B, C, ceil(H/P), ceil(W/P)] (unit by unit checkpointed when grad_checkpointing)
        x_bchw = run_stem_units(self.conv0, self.stages, x_bchw, self.grad_checkpointing)
        # One copy to a contiguous token map (none when channels-last): a permuted view would make every LayerNorm and
        # pooling of the first scale copy it again. The gradient arrives through the permute channels-last strided;
        # the convs get it in the stem's layout.
        return contiguous_gradient(x_bchw, layout).permute(0, 2, 3, 1).contiguous()  # [B, h, w, C]
