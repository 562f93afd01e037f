"""Split backend: top-down attention as one attention per key segment, merged by log-sum-exp -- no K/V concat.

A fine query of scale ``l`` attends to the union of ``M + 1`` key segments: its own window and, for each coarser
scale ``l + m``, its ancestor window. Softmax over a union of segments is exactly the log-sum-exp merge of the
per-segment attentions (flash-decoding): with ``o_m, lse_m`` each segment's output and log-normaliser,
``lse = logsumexp_m lse_m`` and ``o = sum_m exp(lse_m - lse) * o_m``. So no fine window needs its own copy of the
ancestors' K/V -- the queries are grouped by ancestor instead, and that grouping is free:

**Nested window order.** The windows of scale ``l`` are stored in an order where, for every multi-window ancestor
scale ``l + m``, the ``sh^m x sw^m`` fine windows under one ancestor window are consecutive (rows and columns of the
window grid written as base-``s`` digits, most significant first, the ``h`` and ``w`` digits interleaved; a volume
interleaves ``d``, ``h`` and ``w`` digits the same way). With the
heads axis outside the windows (``[B, n, W, T, d]``), the queries of segment ``m`` are a *view*
``[B * n * A_m, 1, G_m * T, d]`` (``A_m`` ancestor windows, ``G_m`` fine windows each) and the ancestor K/V, stored
in the same nested order at their own scale, are a view ``[B * n * A_m, 1, T_m, d]``. A single-window ancestor is one
group holding all queries. The window grid of scale ``l`` is padded to a multiple of ``s^M1`` windows (``M1`` = the
number of multi-window ancestors) -- zero padding, masked out like all padding.

**Kernels.** On CPU the segments run through ``aten._scaled_dot_product_flash_attention_for_cpu`` (which returns the
log-sum-exp) inside :class:`_SegmentMergeAttention`, whose backward calls the matching backward kernel once per
segment with the *merged* output and log-sum-exp -- exactly the gradient of the softmax over the union (the segment's
share of ``P = exp(S - lse)`` and ``D = rowsum(dO * O)`` are those of the whole row). Elsewhere (CUDA, or a torch
without that op) a pure-PyTorch segment (``matmul`` + ``logsumexp``) merged the same way is differentiated by
autograd: always correct, memory ``O(T * T_m)`` per window.

**Padding.** Padded keys get an additive ``-inf``. A window whose keys are *all* padding (it only holds padded
queries, whose outputs are cropped) keeps its keys unmasked, so every row stays finite in forward and backward; the
zero-padded queries and keys receive no gradient that reaches a real token.

**Bottom-up** attention has no ancestor copies to avoid (each coarse block reads its fine window in place); it is one
segment per fine window through the same kernels (:func:`split_bottomup_attention`), so a forced ``split`` backend
runs its own code in both passes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from atlas_vision.ops import windows as _windows
from atlas_vision.ops.grad_mode import needs_grad
from atlas_vision.ops.layout import MultiScaleLayout, ScaleGeometry, SizeND, ceil_div

_CPU_KERNEL_DTYPES = (torch.float32, torch.float64, torch.bfloat16)


# --------------------------------------------------------------------------------------------- nested window order
@dataclass(frozen=True)
class NestedWindows:
    """How one scale's token map is cut into windows in nested order (2-D or 3-D: one entry per grid axis).

    Attributes:
        grid: ``(h, w)`` (or ``(d, h, w)``) real tokens.
        window: ``(kh, kw)``.
        padded_windows: ``(ph, pw)`` windows per axis after padding, multiples of ``stride ** levels``.
        stride: ``(sh, sw)`` digit bases.
        levels: number of nested digit levels (0 = plain raster order).
    """

    grid: SizeND
    window: SizeND
    padded_windows: SizeND
    stride: SizeND
    levels: int

    @property
    def padded_grid(self) -> SizeND:
        return tuple(p * k for p, k in zip(self.padded_windows, self.window))

    @property
    def needs_padding(self) -> bool:
        return self.padded_grid != tuple(self.grid)

    def _split_shape(self) -> list[int]:
        """Per grid axis: ``[ancestors, digit_1 .. digit_levels, window]`` -- e.g. ``[ah, sh.., kh, aw, sw.., kw]``."""
        lv = self.levels
        shape = []
        for p, s, k in zip(self.padded_windows, self.stride, self.window):
            shape += [p // s**lv, *([s] * lv), k]
        return shape

    def _permutation(self) -> list[int]:
        # view dims: 0 B | per axis a: (1 + a*(L+2)) ancestors, then L digits, then the window | n | d
        # 2-D: 0 B | 1 ah | 2..1+L h-digits | 2+L kh | 3+L aw | 4+L..3+2L w-digits | 4+2L kw | 5+2L n | 6+2L d
        lv, nd = self.levels, len(self.window)
        base = [1 + axis * (lv + 2) for axis in range(nd)]
        heads = 1 + nd * (lv + 2)
        digits = [base[axis] + 1 + i for i in range(lv) for axis in range(nd)]  # digit tuples, most significant first
        return [0, heads, *base, *digits, *(b + lv + 1 for b in base), heads + 1]

    def partition(self, x_bhwnd: torch.Tensor) -> torch.Tensor:
        """``[B, h, w, n, d]`` -> ``[B, n, W, T, d]`` (``W = ph * pw`` windows in nested order, ``T = kh * kw``)."""
        b, n, d = x_bhwnd.shape[0], x_bhwnd.shape[-2], x_bhwnd.shape[-1]
        x = _windows.pad_grid(x_bhwnd, self.padded_grid)
        x = x.view(b, *self._split_shape(), n, d)
        x = x.permute(self._permutation())  # [B, n, ah, aw, (h, w digit) pairs..., kh, kw, d]
        return x.reshape(b, n, math.prod(self.padded_windows), math.prod(self.window), d)

    def merge(self, x_bnWTd: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`partition`, cropped to ``grid``: ``[B, n, W, T, d]`` -> ``[B, h, w, n, d]``."""
        b, n, _, _, d = x_bnWTd.shape
        perm = self._permutation()
        view_shape = (b, *self._split_shape(), n, d)
        x = x_bnWTd.view([view_shape[i] for i in perm])
        inverse = sorted(range(len(perm)), key=perm.__getitem__)
        x = x.permute(inverse)  # [B, ah, h digits..., kh, aw, w digits..., kw, n, d]
        x = x.reshape(b, *self.padded_grid, n, d)
        if self.needs_padding:
            x = x[(slice(None), *(slice(0, g) for g in self.grid))]
        return x

    def key_mask(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
        """Additive ``[W, T]`` mask (0 real, ``-inf`` padding; all-padding windows left unmasked) or ``None``."""
        if not self.needs_padding:
            return None
        valid_grid = torch.ones((), dtype=torch.bool, device=device)
        for axis, (p, g) in enumerate(zip(self.padded_grid, self.grid)):
            inside = torch.arange(p, device=device) < g
            valid_grid = valid_grid[..., None] & inside.view(*(1,) * axis, -1)  # [H, W] (2-D)
        valid = self.partition(valid_grid[None, ..., None, None])[0, 0, :, :, 0]  # [W, T]
        valid = valid | ~valid.any(dim=1, keepdim=True)  # all-padding windows: keep finite
        mask = torch.zeros(valid.shape, dtype=dtype, device=device)
        return mask.masked_fill_(~valid, float("-inf"))


def _nested(geo: ScaleGeometry, padded_windows: SizeND, stride: SizeND, levels: int) -> NestedWindows:
    return NestedWindows(grid=geo.grid, window=geo.window, padded_windows=padded_windows, stride=stride, levels=levels)


# ---------------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class _Segment:
    """Static description of one key segment: ``groups`` query groups per (batch, head); optional ``[groups, T_m]``
    additive key mask."""

    groups: int
    mask: torch.Tensor | None


def _plan(
    layout: MultiScaleLayout, scale: int, num_segments: int
) -> tuple[NestedWindows, list[NestedWindows | None], int]:
    """The query nesting, one nesting per segment (``None`` = single-window ancestor), and ``M1``."""
    geo = layout[scale]
    multi = [m for m in range(1, num_segments) if not layout[scale + m].is_single_window]
    levels = len(multi)  # multi-window ancestors are m = 1..levels (coarser grids are smaller)
    factors = [s**levels for s in layout.stride]
    padded = tuple(ceil_div(n, f) * f for n, f in zip(geo.num_windows, factors))  # whole ancestor blocks per axis
    query = _nested(geo, padded, layout.stride, levels)
    segments: list[NestedWindows | None] = [query]
    for m in range(1, num_segments):
        if m <= levels:
            src = layout[scale + m]
            src_padded = tuple(p // s**m for p, s in zip(padded, layout.stride))
            segments.append(_nested(src, src_padded, layout.stride, levels - m))
        else:
            segments.append(None)
    return query, segments, levels


# ----------------------------------------------------------------------------------------- per-segment kernels
def _batched(x_bnAtd: torch.Tensor, groups: int) -> torch.Tensor:
    """``[B, n, W, T, d]`` (or ``[B, n, A, S, d]``) -> the kernel's ``[B * n * groups, 1, tokens, d]`` (a view)."""
    b, n = x_bnAtd.shape[:2]
    return x_bnAtd.reshape(b * n * groups, 1, -1, x_bnAtd.shape[-1])


def _expand_mask(mask_gS: torch.Tensor | None, batch_heads: int) -> torch.Tensor | None:
    """``[groups, S]`` -> ``[batch_heads * groups, 1, 1, S]``, the kernel's broadcastable mask."""
    if mask_gS is None:
        return None
    g, s = mask_gS.shape
    return mask_gS.expand(batch_heads, g, s).reshape(batch_heads * g, 1, 1, s)


def _merge(out: torch.Tensor | None, lse: torch.Tensor | None, o: torch.Tensor, lse_o: torch.Tensor):
    """Log-sum-exp merge of a running ``(out [.., T, d], lse [.., T])`` with one more segment's.

    The running output is kept in at least fp32 (bf16/fp16 segments are accumulated in fp32); the caller casts the
    final output back to the input dtype.
    """
    acc = torch.promote_types(o.dtype, torch.float32)
    if out is None:
        return o.to(acc), lse_o.to(acc)
    lse_o = lse_o.to(acc)
    new = torch.logaddexp(lse, lse_o)
    return out * torch.exp(lse - new).unsqueeze(-1) + o.to(acc) * torch.exp(lse_o - new).unsqueeze(-1), new


def _fused_segments(
    segments: Sequence[_Segment], softmax_scale: float, q: torch.Tensor, kv: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor | None]]:
    """The fused CPU kernel per segment, LSE-merged: the forward of :class:`_SegmentMergeAttention`.

    Args:
        q: ``[B, n, W, T, d]`` contiguous queries.
        kv: per segment ``k, v``, each ``[B, n, groups, T_m, d]`` contiguous.

    Returns:
        ``(out, lse, masks)``: ``out [B, n, W, T, d]`` in ``q``'s dtype, the merged log-sum-exp ``[B, n, W, T]`` (at
        least fp32) and each segment's expanded key mask (what the backward kernel needs again).
    """
    kernel = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    b, n = q.shape[:2]
    out = lse = None
    masks = []
    for index, seg in enumerate(segments):
        k, v = kv[2 * index], kv[2 * index + 1]
        mask = _expand_mask(seg.mask, b * n)
        masks.append(mask)
        o, lse_o = kernel(
            _batched(q, seg.groups),
            _batched(k, seg.groups),
            _batched(v, seg.groups),
            attn_mask=mask,
            scale=softmax_scale,
        )  # [B*n*g, 1, G*T, d], [B*n*g, 1, G*T]
        out, lse = _merge(out, lse, o.view(q.shape), lse_o.view(q.shape[:-1]))
    return out.to(q.dtype), lse, masks  # the kernels' lse stays fp32 (their convention for low-precision inputs)


class _SegmentMergeAttention(torch.autograd.Function):
    """CPU fused path: forward = flash kernel per segment + LSE merge; backward = flash backward per segment with the
    merged output and LSE. Inputs ``q [B, n, W, T, d]`` and per segment ``k, v [B, n, groups, T_m, d]``."""

    @staticmethod
    def forward(ctx, segments: tuple[_Segment, ...], softmax_scale: float, q: torch.Tensor, *kv: torch.Tensor):
        out, lse, masks = _fused_segments(segments, softmax_scale, q, kv)
        if torch.compiler.is_compiling():
            # torch 2.11's dynamo returned wrong gradients through this Function (errors ~1, forward exact) unless
            # the output it saves and returns is a fresh copy; 2.14 does not need it, and eager never pays for it.
            # tests/test_ops.py::test_compiled_fast_paths_match_eager_forward_and_backward fails on 2.11 without it.
            out = out.clone()
        ctx.segments, ctx.softmax_scale, ctx.masks = segments, softmax_scale, masks
        ctx.save_for_backward(q, out, lse, *kv)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        backward_kernel = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
        q, out, lse, *kv = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_q = torch.zeros_like(q)
        grads_kv: list[torch.Tensor] = []
        for index, seg in enumerate(ctx.segments):
            k, v = kv[2 * index], kv[2 * index + 1]
            g = seg.groups
            dq, dk, dv = backward_kernel(
                _batched(grad_out, g),
                _batched(q, g),
                _batched(k, g),
                _batched(v, g),
                _batched(out, g),
                lse.view(q.shape[0] * q.shape[1] * g, 1, -1),
                0.0,
                False,
                attn_mask=ctx.masks[index],
                scale=ctx.softmax_scale,
            )
            grad_q += dq.view(q.shape)
            grads_kv += [dk.view(k.shape), dv.view(v.shape)]
        return None, None, grad_q, *grads_kv


def _math_merge(segments: Sequence[_Segment], softmax_scale: float, q: torch.Tensor, kv: Sequence[torch.Tensor]):
    """Pure-PyTorch fallback of :class:`_SegmentMergeAttention` (any device and dtype; autograd differentiates it)."""
    b, n = q.shape[:2]
    out = lse = None
    for index, seg in enumerate(segments):
        k, v = kv[2 * index], kv[2 * index + 1]
        scores = torch.matmul(_batched(q, seg.groups), _batched(k, seg.groups).transpose(-1, -2)) * softmax_scale
        mask = _expand_mask(seg.mask, b * n)
        if mask is not None:
            scores = scores + mask
        lse_o = torch.logsumexp(scores, dim=-1)  # [B*n*g, 1, G*T]
        o = torch.matmul(torch.exp(scores - lse_o.unsqueeze(-1)), _batched(v, seg.groups))
        out, lse = _merge(out, lse, o.view(q.shape), lse_o.view(q.shape[:-1]))
    return out.to(q.dtype)


def cpu_kernel_available(x: torch.Tensor) -> bool:
    """Whether the fused CPU kernel path applies to ``x`` (CPU tensor of a kernel dtype, op present)."""
    return (
        x.device.type == "cpu"
        and x.dtype in _CPU_KERNEL_DTYPES
        and hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu")
    )


# ------------------------------------------------------------------------------------------------------ the op
def split_topdown_attention(
    q: torch.Tensor,
    keys: Sequence[torch.Tensor],
    values: Sequence[torch.Tensor],
    layout: MultiScaleLayout,
    scale: int,
    softmax_scale: float | None = None,
    use_kernel: bool | None = None,
) -> torch.Tensor:
    """Top-down windowed attention of scale ``scale``; see :func:`atlas_vision.ops.topdown_attention`.

    Args:
        use_kernel: force (``True``) or forbid (``False``) the fused CPU kernel; ``None`` = use it when available.
    """
    d = q.shape[-1]
    scale_factor = d**-0.5 if softmax_scale is None else float(softmax_scale)
    query, nestings, _ = _plan(layout, scale, len(keys))
    q_n = query.partition(q)  # [B, n, W, T, d]
    num_windows = q_n.shape[2]
    segments: list[_Segment] = []
    kv: list[torch.Tensor] = []
    for nesting, k, v in zip(nestings, keys, values):
        if nesting is None:  # single-window ancestor: one group of all queries, K/V [B, n, 1, S, d]
            segments.append(_Segment(groups=1, mask=None))
            kv += [k.flatten(1, -3).transpose(1, 2).unsqueeze(2), v.flatten(1, -3).transpose(1, 2).unsqueeze(2)]
            continue
        k_n, v_n = nesting.partition(k), nesting.partition(v)  # [B, n, A, T_m, d]
        groups = k_n.shape[2]
        assert num_windows % groups == 0, (num_windows, groups)  # guaranteed by the nesting
        segments.append(_Segment(groups=groups, mask=nesting.key_mask(q.dtype, q.device)))
        kv += [k_n, v_n]
    return query.merge(_run_segments(segments, scale_factor, q_n, kv, use_kernel))


def _run_segments(
    segments: Sequence[_Segment],
    softmax_scale: float,
    q_n: torch.Tensor,
    kv: Sequence[torch.Tensor],
    use_kernel: bool | None,
) -> torch.Tensor:
    """The LSE-merged attention of ``q_n [B, n, W, T, d]`` over the segments (fused CPU kernel or PyTorch math)."""
    kv = [t.contiguous() for t in kv]
    if use_kernel is None:
        use_kernel = cpu_kernel_available(q_n)
    if use_kernel and not needs_grad(q_n, *kv):
        # inference calls the kernels directly: nothing to save for a backward, and dynamo (torch 2.14) cannot trace
        # this Function's forward under no_grad -- torch.compile(model, fullgraph=True) failed there, and without
        # fullgraph every MSA call fell back to eager
        # (tests/test_models.py::test_torch_compile_inference_full_graph_matches_eager)
        return _fused_segments(segments, softmax_scale, q_n.contiguous(), kv)[0]
    if use_kernel:
        return _SegmentMergeAttention.apply(tuple(segments), softmax_scale, q_n.contiguous(), *kv)
    return _math_merge(segments, softmax_scale, q_n, kv)


def split_bottomup_attention(
    q: torch.Tensor,
    k_fine: torch.Tensor,
    v_fine: torch.Tensor,
    layout: MultiScaleLayout,
    scale: int,
    softmax_scale: float | None = None,
    use_kernel: bool | None = None,
) -> torch.Tensor:
    """Bottom-up attention of scale ``scale`` into scale ``scale - 1``; see :func:`atlas_vision.ops.bottomup_attention`.

    One key segment: the coarse queries are cut into the ``(kh/sh) x (kw/sw)`` blocks pooled from one fine window each
    (the whole coarse grid when the fine scale is a single window), grouped with that window's K/V (read in place, raster
    window order), and run through the same kernels as the top-down pass.

    Args:
        use_kernel: force (``True``) or forbid (``False``) the fused CPU kernel; ``None`` = use it when available.
    """
    fine, coarse = layout[scale - 1], layout[scale]
    d = q.shape[-1]
    scale_factor = d**-0.5 if softmax_scale is None else float(softmax_scale)
    # (kh/sh, kw/sw) coarse tokens per fine window (3-D: (kd/sd, kh/sh, kw/sw))
    block = coarse.grid if fine.is_single_window else tuple(k // s for k, s in zip(fine.window, layout.stride))
    queries = NestedWindows(
        grid=coarse.grid, window=block, padded_windows=fine.num_windows, stride=layout.stride, levels=0
    )
    keys = NestedWindows(
        grid=fine.grid, window=fine.window, padded_windows=fine.num_windows, stride=layout.stride, levels=0
    )
    q_n = queries.partition(q)  # [B, n, W_fine, block tokens, d]
    k_n, v_n = keys.partition(k_fine), keys.partition(v_fine)  # [B, n, W_fine, T_fine, d]
    segment = _Segment(groups=fine.windows_total, mask=keys.key_mask(q.dtype, q.device))
    return queries.merge(_run_segments([segment], scale_factor, q_n, [k_n, v_n], use_kernel))
