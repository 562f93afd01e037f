"""Keep a conv stem's activations and gradients NCHW-contiguous (``[B, C, H, W]`` / ``[B, C, D, H, W]``).

A channels-first LayerNorm written as ``permute -> layer_norm -> permute back`` (timm's ``LayerNorm2d``) returns a
channels-last *strided* tensor, and its input gradient is channels-last too; so is the gradient of the stem's final
``permute`` to ``[B, h, w, C]``. oneDNN follows the layout it is handed: every later convolution - forward and, worse,
backward - then runs its channels-last path, which on the 2-core development CPU made the 3x3 conv backward of
Atlas-B's stem 2-3x slower (2.3 s instead of 0.84 s per 384-channel conv at 1024 px; the whole stem's backward 25 s
instead of 13 s; ``benchmarks/profile_train_step.py``, docs/benchmarks.md section 8). The helpers below change only
memory layout, never values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import nn

from atlas_vision.layers.channel_layer_norm import channel_layer_norm


class _ContiguousGradient(torch.autograd.Function):
    """Identity forward; backward hands the incoming gradient on as a contiguous tensor."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


def contiguous_gradient(x: torch.Tensor) -> torch.Tensor:
    """``x`` unchanged; the gradient that flows back through it is made contiguous (a no-op outside autograd)."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return x
    return _ContiguousGradient.apply(x)


def _use_channel_layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> bool:
    """Whether :func:`channel_layer_norm` (no transposed copies; CPU fp32/fp64 with affine) can normalise ``x``.

    Not while tracing (``torch.export`` / ONNX / ``torch.compile``): its per-image loop would fix the batch size of
    the graph, and a compiler fuses the plain version anyway.
    """
    return (
        not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and not torch.is_autocast_enabled("cpu")
        and norm.weight is not None
        and norm.bias is not None
        and x.dtype == norm.weight.dtype
    )


class ContiguousLayerNorm2d(LayerNorm2d):
    """timm's ``LayerNorm2d`` (same parameters, same values) whose output and input gradient are NCHW-contiguous.

    On CPU it normalises without transposing (:func:`~atlas_vision.layers.channel_layer_norm.channel_layer_norm`);
    elsewhere it is timm's permute -> layer_norm -> permute, made contiguous.
    """

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        if _use_channel_layer_norm(self, x_bchw):
            return channel_layer_norm(x_bchw, self.weight, self.bias, self.eps)
        return super().forward(contiguous_gradient(x_bchw)).contiguous()


class ContiguousLayerNorm3d(nn.LayerNorm):
    """LayerNorm over the channels of a ``[B, C, D, H, W]`` map, with contiguous output and input gradient."""

    def forward(self, x_bcdhw: torch.Tensor) -> torch.Tensor:
        if _use_channel_layer_norm(self, x_bcdhw):
            return channel_layer_norm(x_bcdhw, self.weight, self.bias, self.eps)
        x = contiguous_gradient(x_bcdhw).movedim(1, -1)  # [B, D, H, W, C]
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.movedim(-1, 1).contiguous()  # [B, C, D, H, W]
