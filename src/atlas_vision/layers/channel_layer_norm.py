"""LayerNorm over the channels of a contiguous ``[B, C, *spatial]`` map without a transposed copy (CPU fast path).

A channels-first LayerNorm is usually ``permute -> layer_norm -> permute back`` (timm's ``LayerNorm2d``): two
transposing copies forward and two more backward, each the size of the map. Here each image's ``[C, S]`` matrix
(``S`` = spatial positions) goes through a *training-mode batch norm without affine*: it treats the ``S`` positions as
channels and the ``C`` channels as samples, so its batch statistics are exactly the LayerNorm statistics of each
position (biased variance, ``eps`` inside the square root), and its backward is exactly the LayerNorm backward. The
per-channel affine is one ``addcmul``. On the 2-core development CPU, forward + backward of Atlas-B's 192-channel
256x256 stem LayerNorm takes ~0.2 s instead of ~0.5 s (docs/benchmarks.md section 8); values agree with
``F.layer_norm`` to float64 round-off (tests/test_stem_layout.py).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable


class _ChannelLayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
        batch, channels = x.shape[:2]
        x_flat = x.contiguous().view(batch, channels, -1)  # [B, C, S]
        x_hat = torch.empty_like(x_flat)  # normalised map [B, C, S]
        means, invstds = [], []  # per image: the statistics of its S positions, each [S]
        for b in range(batch):
            # batch norm of the [C, S] matrix: statistics over the C rows of each of the S columns
            empty = x_flat.new_empty(0)  # resized by the op to [S]
            _, mean, invstd = torch.ops.aten.native_batch_norm.out(
                x_flat[b],
                None,
                None,
                None,
                None,
                True,
                0.0,
                eps,
                out=x_hat[b],
                save_mean=empty,
                save_invstd=empty.clone(),
            )
            means.append(mean)
            invstds.append(invstd)
        ctx.eps = eps
        ctx.shape = x.shape
        ctx.save_for_backward(x_flat, x_hat, weight, *means, *invstds)
        return torch.addcmul(bias[:, None], x_hat, weight[:, None]).view(x.shape)  # [B, C, *spatial]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x_flat, x_hat, weight, *stats = ctx.saved_tensors
        batch, channels = x_flat.shape[:2]
        means, invstds = stats[:batch], stats[batch:]
        grad = grad.contiguous().view(batch, channels, -1)  # [B, C, S]
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            grad_w = torch.einsum("bcs,bcs->c", grad, x_hat)  # row dot products, no [B, C, S] temporary
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2))
        if ctx.needs_input_grad[0]:
            grad_hat = grad * weight[:, None]  # [B, C, S]
            per_image = [
                torch.ops.aten.native_batch_norm_backward(
                    grad_hat[b], x_flat[b], None, None, None, means[b], invstds[b], True, ctx.eps, [True, False, False]
                )[0]
                for b in range(batch)
            ]  # each [C, S]
            grad_x = (per_image[0] if batch == 1 else torch.stack(per_image)).view(ctx.shape)
        return grad_x, grad_w, grad_b, None


def channel_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """``F.layer_norm`` over dim 1 of ``x`` ``[B, C, *spatial]`` with affine ``weight``/``bias`` ``[C]``; returns a
    contiguous map of the same shape whose input gradient is contiguous too."""
    return _ChannelLayerNorm.apply(x, weight, bias, eps)
