"""A stage of MSA blocks that share the same active scales (a macro-stage of Atlas, a stage of the MSA mixer body)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from atlas_vision.layers.msa_block import MSABlock
from atlas_vision.ops import MultiScaleLayout


class AtlasStage(nn.Module):
    """``depth`` MSA blocks sharing the same active scales ``first_scale .. L-1``.

    Args:
        blocks: the MSA blocks, applied in order.
        first_scale: finest scale the blocks update (scales below it pass through untouched).

    ``forward(xs, layout)``: a list of ``[B, h_l, w_l, C]`` maps, one per scale of ``layout`` -> a new list of the same
    shapes. With ``grad_checkpointing`` set, each block is recomputed in backward (non-reentrant checkpoint).
    """

    def __init__(self, blocks: list[MSABlock], first_scale: int):
        super().__init__()
        self.first_scale = first_scale
        self.blocks = nn.ModuleList(blocks)
        self.grad_checkpointing = False

    def forward(self, xs: list[torch.Tensor], layout: MultiScaleLayout) -> list[torch.Tensor]:
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                xs = checkpoint(block, xs, layout, self.first_scale, use_reentrant=False)
            else:
                xs = block(xs, layout, self.first_scale)
        return xs
