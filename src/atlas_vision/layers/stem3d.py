"""Volumetric conv stem of Atlas-3D: the FasterViT-style stem of :mod:`atlas_vision.layers.stem` with 3-D convs and a
patch size per axis (4, 8 or 16 voxels; anisotropic allowed, e.g. ``(4, 16, 16)`` for thick-slice CT).

``conv0`` (two stride-2 3x3x3 convs, /4 on every axis), then one stage per further factor 2 of the largest patch
side: ``depth`` residual 3x3x3 conv blocks, a channels-first LayerNorm and a 3x3x3 conv that doubles the width and
has stride 2 on the axes that still need it (stride 1 on the others). Every conv has padding 1, so a side of ``n``
voxels becomes ``ceil(n / p)`` tokens.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from atlas_vision.layers.checkpointing import run_stem_units
from atlas_vision.layers.contiguous import ContiguousLayerNorm3d, contiguous_gradient
from atlas_vision.ops import Size3D

STEM3D_PATCH_SIDES = (4, 8, 16)


class ConvResBlock3d(nn.Module):
    """``x + BN(Conv3x3x3(GELU(BN(Conv3x3x3(x)))))`` (the 2-D stem's residual block in 3-D)."""

    def __init__(self, dim: int, *, device: torch.device | None = None, dtype: torch.dtype | None = None):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.conv1 = nn.Conv3d(dim, dim, 3, padding=1, **dd)
        self.norm1 = nn.BatchNorm3d(dim, eps=1e-5, **dd)
        self.act = nn.GELU()
        self.conv2 = nn.Conv3d(dim, dim, 3, padding=1, **dd)
        self.norm2 = nn.BatchNorm3d(dim, eps=1e-5, **dd)

    def forward(self, x_bcdhw: torch.Tensor) -> torch.Tensor:
        return x_bcdhw + self.norm2(self.conv2(self.act(self.norm1(self.conv1(x_bcdhw)))))


def check_patch_size_3d(patch_size: Size3D) -> None:
    """Raise a ValueError naming the value unless every side is one of :data:`STEM3D_PATCH_SIDES`."""
    if len(patch_size) != 3 or any(p not in STEM3D_PATCH_SIDES for p in patch_size):
        raise ValueError(
            f"patch_size must be one of {STEM3D_PATCH_SIDES} on each of the (d, h, w) axes (the 3-D stem halves each "
            f"axis log2(p) times), got {tuple(patch_size)}"
        )


class ConvStem3d(nn.Module):
    """Volume ``[B, in_chans, D, H, W]`` -> token map ``[B, ceil(D/pd), ceil(H/ph), ceil(W/pw), embed_dim]``.

    Args:
        in_chans: input channels (1 for CT/MRI, more for multi-sequence MRI or multichannel microscopy).
        embed_dim: output channels ``C``; must be divisible by ``2 ** (log2(max(patch)) - 2)``.
        patch_size: ``(pd, ph, pw)`` total stride per axis, each 4, 8 or 16.
        hidden: width of the first conv.
        depth: residual blocks per stem stage (0 = plain strided convs; volumes are expensive at /4).
    """

    def __init__(
        self,
        in_chans: int,
        embed_dim: int,
        patch_size: Size3D,
        hidden: int,
        depth: int,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        check_patch_size_3d(patch_size)
        dd = {"device": device, "dtype": dtype}
        halvings = [int(math.log2(p)) - 2 for p in patch_size]  # after conv0's /4
        num_stages = max(halvings)
        width = embed_dim // 2**num_stages
        self.patch_size = tuple(patch_size)
        self.conv0 = nn.Sequential(
            nn.Conv3d(in_chans, hidden, 3, stride=2, padding=1, bias=False, **dd),
            nn.BatchNorm3d(hidden, eps=1e-4, **dd),
            nn.ReLU(),
            nn.Conv3d(hidden, width, 3, stride=2, padding=1, bias=False, **dd),
            nn.BatchNorm3d(width, eps=1e-4, **dd),
            nn.ReLU(),
        )
        stages = []
        for stage in range(num_stages):
            stride = tuple(2 if h > stage else 1 for h in halvings)
            stages.append(
                nn.Sequential(
                    *[ConvResBlock3d(width, **dd) for _ in range(depth)],
                    ContiguousLayerNorm3d(width, **dd),
                    nn.Conv3d(width, 2 * width, 3, stride=stride, padding=1, bias=False, **dd),
                )
            )
            width *= 2
        self.stages = nn.Sequential(*stages)
        self.grad_checkpointing = False  # recompute each unit in backward (layers/checkpointing.py)

    def forward(self, x_bcdhw: torch.Tensor) -> torch.Tensor:
        # conv0, then the stages: [B, C, ceil(D/pd), ceil(H/ph), ceil(W/pw)] (checkpointed when grad_checkpointing)
        x_bcdhw = run_stem_units(self.conv0, self.stages, x_bcdhw, self.grad_checkpointing)
        # One copy to a contiguous token map (see ConvStem.forward); the gradient reaches the convs contiguous.
        return contiguous_gradient(x_bcdhw).movedim(1, -1).contiguous()  # [B, d, h, w, C]
