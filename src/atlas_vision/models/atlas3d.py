"""Atlas-3D: Multi-Scale Attention over ``D x H x W`` token grids (CT, MRI, microscopy stacks).

The same model as :class:`~atlas_vision.models.atlas.Atlas` -- the same MSA blocks, stages, scale dropping, readout
and timm contract, all written for any number of grid axes -- with a volumetric conv stem
(:class:`~atlas_vision.layers.stem3d.ConvStem3d`, patch 4/8/16 per axis) and 3-D window-local position embeddings
(an MLP of normalised ``(slice, row, col)`` in-window coordinates). Windows, pooling strides and patches are given
per axis, so anisotropic volumes (e.g. thick-slice CT: patch ``(4, 16, 16)``) are first-class.

Input ``[B, in_chans, D, H, W]``; ``forward_intermediates`` returns ``[B, C, d_s, h_s, w_s]`` maps (NCDHW).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from atlas_vision.layers.stem3d import ConvStem3d, check_patch_size_3d
from atlas_vision.models.atlas import Atlas
from atlas_vision.models.config import AtlasConfig
from atlas_vision.ops import Size3D, SizeND, to_ntuple


@dataclass(frozen=True, kw_only=True)
class Atlas3DConfig(AtlasConfig):
    """:class:`AtlasConfig` for volumes: ``patch_size``, ``window_size`` and ``pool_stride`` have one entry per axis
    ``(d, h, w)`` (an int is used on every axis).

    Attributes (differing from :class:`AtlasConfig`):
        patch_size: ``(pd, ph, pw)`` voxels per token, each 4, 8 or 16.
        window_size: ``(kd, kh, kw)`` tokens per window (each >= 2).
        pool_stride: ``(sd, sh, sw)`` pooling stride between scales (each >= 2, dividing the window).
        stem_depth: residual conv blocks per stem stage (default 0: a 3x3x3 block at /4 of a 512^3 volume costs
            ~2 TFLOP at 96 channels).
        in_chans: volume channels (1 for CT/MRI).
    """

    embed_dim: int = 384
    num_heads: int = 6
    patch_size: Size3D = (16, 16, 16)
    window_size: Size3D = (8, 8, 8)
    pool_stride: Size3D = (2, 2, 2)
    stem_hidden: int = 32
    stem_depth: int = 0
    in_chans: int = 1

    ndim: ClassVar[int] = 3

    def _normalise_patch(self) -> None:
        object.__setattr__(self, "patch_size", to_ntuple(self.patch_size, 3, "patch_size"))

    def _validate_patch(self, need) -> None:
        check_patch_size_3d(self.patch_size)

    @property
    def patch_sides(self) -> SizeND:
        return self.patch_size


class Atlas3D(Atlas):
    """Atlas over volumes ``[B, in_chans, D, H, W]`` (timm contract: ``forward_features`` -> readout tokens
    ``[B, T, C]``, ``forward_head``, ``forward_intermediates`` -> NCDHW maps, ``features_only``, any ``D x H x W`` at
    run time with one set of weights, any ``in_chans``, gradient checkpointing).

    Example:
        >>> import atlas_vision, timm, torch
        >>> model = timm.create_model("test3d_atlas", num_classes=2).eval()
        >>> model(torch.randn(1, 1, 24, 40, 32)).shape
        torch.Size([1, 2])
    """

    ndim: ClassVar[int] = 3
    input_kind: ClassVar[str] = "volume"
    input_batch: ClassVar[str] = "a volume batch [B, C, D, H, W]"
    size_names: ClassVar[str] = "depth, height and width"
    wrong_rank_hints: ClassVar[dict[int, str]] = {
        4: " -- a 4-D tensor looks like a 2-D image batch [B, C, H, W]; this is a 3-D model: add a depth axis "
        "(x.unsqueeze(2) for one slice) or use a 2-D model (e.g. atlas_small)"
    }
    output_fmts: ClassVar[dict[str, bool]] = {"NCDHW": True, "NDHWC": False, "NCHW": True, "NHWC": False}

    @staticmethod
    def _build_stem(config: AtlasConfig, dd: dict) -> nn.Module:
        return ConvStem3d(
            config.in_chans, config.embed_dim, config.patch_size, config.stem_hidden, config.stem_depth, **dd
        )

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCDHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Per-stage maps ``[B, C, d_s, h_s, w_s]`` (``"NCDHW"``) or ``[B, d_s, h_s, w_s, C]`` (``"NDHWC"``); see
        :meth:`Atlas.forward_intermediates`."""
        return super().forward_intermediates(x, indices, norm, stop_early, output_fmt, intermediates_only)
