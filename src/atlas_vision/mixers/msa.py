"""Multi-Scale Attention in the mixer benchmark network: a multi-scale token list carried across stacked MSA blocks.

MSA does not fit the single-map ``x + mixer(norm(x))`` pattern: its state between blocks is a list of per-scale maps,
and each :class:`~atlas_vision.layers.MSABlock` already contains the per-scale norms, residuals and MLPs. So the
benchmark network (:mod:`atlas_vision.mixers.net`) swaps its whole block stack for a :class:`MultiScaleBody`, which
builds the scales from the stem's map (strided pooling, Alg. 2), runs the blocks, and returns the maps the readout
averages. Three ways to compose the blocks (the paper's Table 5):

* ``stack``: every block processes every scale; the readout averages the tokens of all scales (Table 4's setting);
* ``conv_downsample``: uniform stages; between stages a 2x2 stride-2 conv (after a LayerNorm) halves the finest map
  and the scales are rebuilt from it; the readout averages the tokens of the last stage's scales;
* ``atlas``: progressive scale dropping (stage ``s`` runs on scales ``s ..``; the pooled scale is the downsampled
  representation); the readout averages the tokens of the scales left in the last stage. Built from the same
  :class:`~atlas_vision.layers.AtlasStage` as :class:`~atlas_vision.models.Atlas`.

All blocks come from :mod:`atlas_vision.layers`; nothing here re-implements MSA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import nn

from atlas_vision.layers import AtlasStage, Communication, MSABlock
from atlas_vision.mixers.config import Composition
from atlas_vision.ops import MultiScaleLayout, PoolOp, Size2D, scale_pyramid


class ConvDownsample(nn.Module):
    """``LayerNorm2d -> Conv2d(C, C, 2, stride 2)`` on a ``[B, H, W, C]`` map -> ``[B, ceil(H/2), ceil(W/2), C]``
    (odd sides are zero-padded at the bottom/right first)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = LayerNorm2d(dim)
        self.conv = nn.Conv2d(dim, dim, kernel_size=2, stride=2)

    def forward(self, x_bhwc: torch.Tensor) -> torch.Tensor:
        x = self.norm(x_bhwc.permute(0, 3, 1, 2))  # [B, C, H, W]
        x = F.pad(x, (0, x.shape[3] % 2, 0, x.shape[2] % 2))
        return self.conv(x).permute(0, 2, 3, 1)  # [B, H/2, W/2, C]


class MultiScaleBody(nn.Module):
    """Stacked MSA blocks over a multi-scale token list, composed as ``stack``, ``conv_downsample`` or ``atlas``.

    Args:
        dim: channels ``C``.
        num_heads: attention heads.
        stage_depths: MSA blocks per stage (one stage for ``stack``).
        composition: :class:`Composition`.
        window: window ``(kh, kw)`` of every multi-window scale.
        pool_stride: pooling stride ``(sh, sw)`` between scales (divides the window).
        pool_op: summary pooling (max / avg).
        communication: cross-scale pathways of every block (``single_scale`` = window attention on one scale).
        num_scales: for ``stack`` and ``conv_downsample``: at least this many scales are built (the stop rule may
            add coarser ones, which share the coarsest weights) and each block has this many per-scale weight sets.
            ``atlas`` builds at least one scale per stage instead.
        mlp_ratio: MLP expansion of the per-scale blocks.
        qkv_bias: bias on q/kv projections.
        drop_path_rates: one stochastic-depth rate per block, in order (``len == sum(stage_depths)``).
        pos_embed_hidden: hidden width of the window position-embedding MLPs.

    Shapes: ``forward([B, H, W, C]) -> list of [B, h_l, w_l, C]`` (the maps the readout averages over).

    Example:
        >>> body = MultiScaleBody(32, 4, (2,), Composition.STACK, (8, 8), (4, 4), PoolOp.MAX, Communication.FULL,
        ...                       num_scales=2, mlp_ratio=4.0, qkv_bias=True, drop_path_rates=(0.0, 0.0),
        ...                       pos_embed_hidden=64)
        >>> [tuple(m.shape) for m in body(torch.randn(1, 20, 12, 32))]
        [(1, 20, 12, 32), (1, 5, 3, 32)]
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        stage_depths: tuple[int, ...],
        composition: Composition,
        window: Size2D,
        pool_stride: Size2D,
        pool_op: PoolOp,
        communication: Communication,
        num_scales: int,
        mlp_ratio: float,
        qkv_bias: bool,
        drop_path_rates: tuple[float, ...],
        pos_embed_hidden: int,
    ):
        super().__init__()
        self.composition = Composition(composition)
        self.communication = Communication(communication)
        self.pool_op = PoolOp(pool_op)
        self.window, self.pool_stride = window, pool_stride
        if not stage_depths or any(d < 1 for d in stage_depths):
            raise ValueError(f"stage_depths must be a non-empty tuple of positive ints, got {stage_depths}")
        if self.composition is Composition.STACK and len(stage_depths) != 1:
            raise ValueError(f"the stack composition has one stage, got stage_depths={stage_depths}")
        if len(drop_path_rates) != sum(stage_depths):
            raise ValueError(f"need {sum(stage_depths)} drop-path rates (one per block), got {len(drop_path_rates)}")
        if num_scales < 1:
            raise ValueError(f"num_scales must be >= 1, got {num_scales}")
        single = self.communication is Communication.SINGLE_SCALE
        num_stages = len(stage_depths)
        self.num_scales = 1 if single else num_scales

        stages, rates = [], iter(drop_path_rates)
        for stage, depth in enumerate(stage_depths):
            if self.composition is Composition.ATLAS:
                weight_sets, first = (1, 0) if single else (num_stages - stage, stage)
            else:
                weight_sets, first = self.num_scales, 0
            blocks = [
                MSABlock(
                    dim,
                    num_heads,
                    weight_sets,
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    drop_path=next(rates),
                    pos_embed_hidden=pos_embed_hidden,
                    communication=self.communication,
                    pool_op=self.pool_op,
                )
                for _ in range(depth)
            ]
            stages.append(AtlasStage(blocks, first))
        self.stages = nn.ModuleList(stages)
        num_down = num_stages - 1 if self.composition is Composition.CONV_DOWNSAMPLE else 0
        self.downsamples = nn.ModuleList(ConvDownsample(dim) for _ in range(num_down))
        self._atlas_min_scales = num_stages

    def layout_for(self, grid: Size2D) -> MultiScaleLayout:
        """Scales used for a stage whose finest map has ``grid`` tokens."""
        if self.communication is Communication.SINGLE_SCALE:
            return MultiScaleLayout.from_grid(grid, self.window, self.pool_stride, max_scales=1)
        min_scales = self._atlas_min_scales if self.composition is Composition.ATLAS else self.num_scales
        return MultiScaleLayout.from_grid(grid, self.window, self.pool_stride, min_scales=min_scales)

    def _pyramid(self, x_bhwc: torch.Tensor) -> tuple[list[torch.Tensor], MultiScaleLayout]:
        layout = self.layout_for((x_bhwc.shape[1], x_bhwc.shape[2]))
        return scale_pyramid(x_bhwc, layout, self.pool_op), layout

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    def forward(self, x_bhwc: torch.Tensor) -> list[torch.Tensor]:
        xs, layout = self._pyramid(x_bhwc)
        for index, stage in enumerate(self.stages):
            if index > 0 and self.composition is Composition.CONV_DOWNSAMPLE:
                xs, layout = self._pyramid(self.downsamples[index - 1](xs[0]))
            xs = stage(xs, layout)
        return xs[self.stages[-1].first_scale :]
