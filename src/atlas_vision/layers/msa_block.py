"""One Multi-Scale Attention block (spec 1.2-1.8, Algorithm 1) over a list of per-scale token maps.

With the active scales ``first .. L-1`` (0-based) of a :class:`~atlas_vision.ops.MultiScaleLayout`:

0. every scale adds its window-local position embedding;
1. fine -> coarse: ``x[l] += Summarize(x[l-1])`` (sequential, so scale ``l + 1`` pools the updated scale ``l``);
2. top-down, coarse -> fine: each window of scale ``l`` attends to its own tokens and to the containing window of every
   coarser scale (already updated), then the scale's residual + MLP update;
3. bottom-up, fine -> coarse: each token of scale ``l >= first + 1`` attends to the fine window it was pooled from,
   then the scale's residual + MLP update.

K/V of a scale are projected once per update of that scale and reused by every pass that reads them (the paper's
QKV cache, Appendix C) -- as local variables of ``forward``, never as module state.
"""

from __future__ import annotations

from enum import Enum

import torch
from torch import nn

from atlas_vision.layers.scale_block import ScaleBlock
from atlas_vision.ops import Backend, MultiScaleLayout, PoolOp, bottomup_attention, summarize, topdown_attention


class Communication(str, Enum):
    """Which cross-scale pathways an MSA block uses (the paper's Table 4 ablation)."""

    FULL = "full"  # summary add + top-down + bottom-up: MSA as published
    TOP_DOWN = "top_down"  # summary add + top-down; no bottom-up pass
    BOTTOM_UP = "bottom_up"  # summary add + window attention within each scale + bottom-up
    NONE = "none"  # scales processed independently: window attention within each scale only
    SINGLE_SCALE = "single_scale"  # one scale: plain non-overlapping window attention

    @property
    def summary_add(self) -> bool:
        return self in (Communication.FULL, Communication.TOP_DOWN, Communication.BOTTOM_UP)

    @property
    def top_down(self) -> bool:
        return self in (Communication.FULL, Communication.TOP_DOWN)

    @property
    def bottom_up(self) -> bool:
        return self in (Communication.FULL, Communication.BOTTOM_UP)


class MSABlock(nn.Module):
    """Multi-Scale Attention block.

    Holds ``num_scale_blocks`` :class:`ScaleBlock` s. The block's finest active scale uses the first one, the next
    coarser scale the second, and every scale beyond the last one shares the last one -- so the parameter set does not
    depend on the image size and every parameter is used at every size.

    Args:
        dim: channels ``C``.
        num_heads: attention heads.
        num_scale_blocks: per-scale weight sets (>= 1).
        mlp_ratio: MLP expansion.
        qkv_bias: bias on q/kv projections.
        drop_path: stochastic-depth rate shared by all scales of this block.
        pos_embed_hidden: hidden width of the position-embedding MLPs.
        communication: :class:`Communication` mode.
        pool_op: :class:`~atlas_vision.ops.PoolOp` of the fine -> coarse summary.
        backend: attention backend of the ops.
        ndim: axes of the token grids it runs on (2 for images, 3 for volumes).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_scale_blocks: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        pos_embed_hidden: int = 512,
        communication: Communication = Communication.FULL,
        pool_op: PoolOp = PoolOp.MAX,
        backend: Backend = Backend.AUTO,
        *,
        ndim: int = 2,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        if num_scale_blocks < 1:
            raise ValueError(f"num_scale_blocks must be >= 1, got {num_scale_blocks}")
        self.communication = Communication(communication)
        self.pool_op = PoolOp(pool_op)
        self.ndim = ndim
        self.backend = Backend.parse(backend)
        self.scale_blocks = nn.ModuleList(
            ScaleBlock(
                dim, num_heads, mlp_ratio, qkv_bias, drop_path, pos_embed_hidden, ndim=ndim, device=device, dtype=dtype
            )
            for _ in range(num_scale_blocks)
        )

    def block_for(self, scale: int, first_scale: int) -> ScaleBlock:
        """The weights used by ``scale`` when the block's finest active scale is ``first_scale``."""
        return self.scale_blocks[min(scale - first_scale, len(self.scale_blocks) - 1)]

    def forward(self, xs: list[torch.Tensor], layout: MultiScaleLayout, first_scale: int) -> list[torch.Tensor]:
        """Update scales ``first_scale .. L-1``.

        Args:
            xs: one ``[B, h_l, w_l, C]`` (volumes: ``[B, d_l, h_l, w_l, C]``) map per scale of ``layout`` (scales
                before ``first_scale`` are passed through untouched).
            layout: geometry of the scales.
            first_scale: finest scale this block processes.

        Returns:
            a new list of the same shapes.
        """
        num_scales = layout.num_scales
        if len(xs) != num_scales:
            raise ValueError(f"expected {num_scales} scale maps for this layout, got {len(xs)}")
        if layout.ndim != self.ndim:
            raise ValueError(f"this MSA block is built for {self.ndim}-D token grids, got a {layout.ndim}-D layout")
        if self.communication is Communication.SINGLE_SCALE and num_scales - first_scale != 1:
            raise ValueError(
                f"single-scale communication needs exactly one active scale, got {num_scales - first_scale}"
            )
        xs = list(xs)
        active = range(first_scale, num_scales)
        mode = self.communication

        for scale in active:
            xs[scale] = xs[scale] + self.block_for(scale, first_scale).pos_embed(layout[scale], xs[scale])

        if mode.summary_add:
            for scale in active[1:]:
                xs[scale] = xs[scale] + summarize(xs[scale - 1], layout.stride, self.pool_op)

        # top-down, coarse -> fine; kv[scale] holds the K/V of the *updated* coarser scales
        kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for scale in reversed(active):
            blk = self.block_for(scale, first_scale)
            own_k, own_v = blk.keys_values(xs[scale])
            keys, values = [own_k], [own_v]
            if mode.top_down:
                keys += [kv[m][0] for m in range(scale + 1, num_scales)]
                values += [kv[m][1] for m in range(scale + 1, num_scales)]
            attn = topdown_attention(blk.queries(xs[scale]), keys, values, layout, scale, backend=self.backend)
            xs[scale] = blk.update(xs[scale], attn)
            if mode.top_down and scale > first_scale:
                kv[scale] = blk.keys_values(xs[scale])

        # bottom-up, fine -> coarse
        if mode.bottom_up:
            for scale in active[1:]:
                fine_blk, blk = self.block_for(scale - 1, first_scale), self.block_for(scale, first_scale)
                k_fine, v_fine = fine_blk.keys_values(xs[scale - 1])
                attn = bottomup_attention(blk.queries(xs[scale]), k_fine, v_fine, layout, scale, backend=self.backend)
                xs[scale] = blk.update(xs[scale], attn)
        return xs
