"""Dilated attention of LongNet / LongViT (Ding et al. 2023, arXiv 2307.02486; LongViT: Wang et al. 2023) as a mixer.

The token map is flattened in raster order to a sequence of ``N`` tokens. For every branch ``i`` with segment length
``w_i`` and dilation rate ``r_i`` (geometric sequences ``w_i = w_0 * a**i``, ``r_i = a**i``, the last segment
covering the whole sequence):

* the sequence is cut into segments of ``w_i`` tokens;
* head ``j`` keeps, inside every segment, the tokens at positions ``o_j, o_j + r_i, o_j + 2 r_i, ...`` with the offset
  ``o_j = j mod r_i`` (the paper's head split across dilation offsets; torchscale assigns contiguous blocks of heads
  to an offset, which is the same up to a permutation of heads);
* the kept tokens attend to each other (dense attention on ``w_i / r_i`` tokens).

The outputs of the branches are combined with weights proportional to their softmax denominators,
``O = sum_i O_i * exp(lse_i) / sum_k exp(lse_k)`` (``lse`` = log-sum-exp of the logits; a head that does not cover a
position in a branch contributes ``lse = -inf``). For disjoint key sets this is exactly attention over their union.
Unlike torchscale, gradients flow through the weights (torchscale computes them under ``no_grad``), and padding of the
last segment is masked instead of attended as zeros.

Cost per branch ~ ``N * w_i / r_i`` per head, i.e. ``O(N * w_0)`` per branch and ``O(N w_0 log N)`` in total.
"""

from __future__ import annotations

import torch
from torch import nn

from atlas_vision.mixers._common import QKVProjection, check_token_map
from atlas_vision.ops import ceil_div


def geometric_schedule(num_tokens: int, base_segment: int, ratio: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """LongNet's geometric schedule: segments ``w_0 * ratio**i`` and rates ``ratio**i`` until a segment covers all.

    Args:
        num_tokens: sequence length ``N`` (>= 1).
        base_segment: first segment length ``w_0`` (dilation 1), >= 1.
        ratio: geometric ratio ``a`` (>= 2).

    Returns:
        ``(segment_lengths, dilation_rates)``; the last segment is ``>= N``.

    Example:
        >>> geometric_schedule(1000, 64, 2)
        ((64, 128, 256, 512, 1024), (1, 2, 4, 8, 16))
    """
    if num_tokens < 1 or base_segment < 1 or ratio < 2:
        raise ValueError(
            f"need num_tokens >= 1, base_segment >= 1 and ratio >= 2; got {num_tokens}, {base_segment}, {ratio}"
        )
    segments, rates = [base_segment], [1]
    while segments[-1] < num_tokens:
        segments.append(segments[-1] * ratio)
        rates.append(rates[-1] * ratio)
    return tuple(segments), tuple(rates)


def _branch(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, segment: int, rate: int, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One (segment, dilation) branch.

    Args:
        q, k, v: ``[B, n, N, d]``.

    Returns:
        ``(out [B, n, N, d], lse [B, n, N])``; positions a head does not cover get ``out = 0`` and ``lse = -inf``.
    """
    b, n, length, d = q.shape
    segment = min(segment, length)
    num_seg = ceil_div(length, segment)
    sparse = ceil_div(segment, rate)  # kept tokens per segment and head
    offsets = torch.arange(n, device=q.device) % rate  # [n]

    def gather(t: torch.Tensor) -> torch.Tensor:  # [B, n, N, d] -> [B, n, S, L, d]
        t = nn.functional.pad(t, (0, 0, 0, num_seg * segment - length)).view(b, n, num_seg, segment, d)
        t = nn.functional.pad(t, (0, 0, 0, sparse * rate - segment)).view(b, n, num_seg, sparse, rate, d)
        index = offsets.view(1, n, 1, 1, 1, 1).expand(b, n, num_seg, sparse, 1, d)
        return t.gather(4, index).squeeze(4)

    # position of kept token (segment s, slot j) of head h, and whether it is a real token
    slot = torch.arange(sparse, device=q.device)
    in_seg = offsets[:, None] + slot[None, :] * rate  # [n, L]
    pos = torch.arange(num_seg, device=q.device)[None, :, None] * segment + in_seg[:, None, :]  # [n, S, L]
    valid = (in_seg[:, None, :] < segment) & (pos < length)  # [n, S, L]

    qs, ks, vs = gather(q), gather(k), gather(v)  # [B, n, S, L, d]
    logits = torch.einsum("bhsid,bhsjd->bhsij", qs, ks) * scale  # [B, n, S, L, L]
    logits = logits.masked_fill(~valid[None, :, :, None, :], torch.finfo(logits.dtype).min)
    lse = torch.logsumexp(logits, dim=-1)  # [B, n, S, L]
    out = torch.einsum("bhsij,bhsjd->bhsid", torch.exp(logits - lse[..., None]), vs)  # [B, n, S, L, d]

    # scatter back to dense positions (other offsets: out 0, lse -inf); padded slots fall outside [0, N) and are cut
    index = offsets.view(1, n, 1, 1, 1).expand(b, n, num_seg, sparse, 1)
    dense_lse = torch.full((b, n, num_seg, sparse, rate), float("-inf"), dtype=lse.dtype, device=q.device)
    dense_lse = dense_lse.scatter(4, index, lse[..., None])
    dense_out = torch.zeros((b, n, num_seg, sparse, rate, d), dtype=out.dtype, device=q.device)
    dense_out = dense_out.scatter(4, index[..., None].expand(b, n, num_seg, sparse, 1, d), out[..., None, :])

    def crop(t: torch.Tensor) -> torch.Tensor:  # [B, n, S, L, r, ...] -> [B, n, N, ...]
        t = t.flatten(3, 4)[:, :, :, :segment]  # [B, n, S, w, ...]
        return t.flatten(2, 3)[:, :, :length]

    return crop(dense_out), crop(dense_lse)


def dilated_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    segment_lengths: tuple[int, ...],
    dilation_rates: tuple[int, ...],
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """LongNet dilated attention of 1-D sequences (see the module docstring).

    Args:
        q, k, v: ``[B, n_heads, N, d]``.
        segment_lengths: ``w_i`` per branch (each >= 1; clipped to ``N``).
        dilation_rates: ``r_i`` per branch (each >= 1); one of them must be 1 so that every position of every head
            is covered by some branch.
        softmax_scale: defaults to ``d ** -0.5``.

    Returns:
        ``[B, n_heads, N, d]``.

    Equivalent computation: with one branch ``(w >= N, r = 1)`` this is plain softmax attention over the sequence.
    """
    if len(segment_lengths) != len(dilation_rates) or not segment_lengths:
        raise ValueError(f"need one dilation rate per segment length, got {segment_lengths} and {dilation_rates}")
    if any(w < 1 for w in segment_lengths) or any(r < 1 for r in dilation_rates):
        raise ValueError(f"segment lengths and dilation rates must be >= 1, got {segment_lengths}, {dilation_rates}")
    if 1 not in dilation_rates:
        raise ValueError(f"one dilation rate must be 1 so every position is covered, got {dilation_rates}")
    scale = softmax_scale if softmax_scale is not None else q.shape[-1] ** -0.5
    outs, lses = zip(*(_branch(q, k, v, w, r, scale) for w, r in zip(segment_lengths, dilation_rates)))
    weights = torch.softmax(torch.stack(lses), dim=0)  # [branches, B, n, N]
    return (torch.stack(outs) * weights[..., None]).sum(dim=0)


class DilatedAttention(nn.Module):
    """LongNet / LongViT dilated attention over the raster-ordered tokens of a map.

    Args:
        dim: channels ``C``.
        num_heads: heads (must divide ``dim``).
        base_segment: first segment length ``w_0`` (dilation 1).
        ratio: geometric ratio ``a`` of segment lengths and dilation rates (>= 2).
        qkv_bias: bias on the q/k/v projection.

    The schedule is :func:`geometric_schedule` of the actual token count, so every size is covered by a last segment
    that spans the whole image.

    Shapes: ``[B, H, W, C]`` -> ``[B, H, W, C]``.

    Example:
        >>> mixer = DilatedAttention(dim=32, num_heads=4, base_segment=16, ratio=2)
        >>> mixer(torch.randn(2, 9, 14, 32)).shape
        torch.Size([2, 9, 14, 32])
    """

    def __init__(self, dim: int, num_heads: int, base_segment: int, ratio: int = 2, qkv_bias: bool = True):
        super().__init__()
        if base_segment < 1 or ratio < 2:
            raise ValueError(f"need base_segment >= 1 and ratio >= 2, got {base_segment} and {ratio}")
        self.dim = dim
        self.base_segment = base_segment
        self.ratio = ratio
        self.attn = QKVProjection(dim, num_heads, qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_token_map(x, self.dim, type(self).__name__)
        _, h, w, _ = x.shape
        segments, rates = geometric_schedule(h * w, self.base_segment, self.ratio)
        q, k, v = (t.flatten(1, 2).transpose(1, 2) for t in self.attn.split(x))  # each [B, n, N, d]
        out = dilated_attention(q, k, v, segments, rates)  # [B, n, N, d]
        return self.attn.merge(out.transpose(1, 2).unflatten(1, (h, w)))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, base_segment={self.base_segment}, ratio={self.ratio}"
