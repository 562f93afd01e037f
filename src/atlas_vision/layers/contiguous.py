"""Keep a conv stem's activations and gradients NCHW-contiguous (``[B, C, H, W]`` / ``[B, C, D, H, W]``).

A channels-first LayerNorm written as ``permute -> layer_norm -> permute back`` (timm's ``LayerNorm2d``) returns a
channels-last *strided* tensor, and its input gradient is channels-last too; so is the gradient of the stem's final
``permute`` to ``[B, h, w, C]``. oneDNN follows the layout it is handed: every later convolution - forward and, worse,
backward - then runs its channels-last path, which on the 2-core development CPU made the 3x3 conv backward of
Atlas-B's stem 2-3x slower (2.3 s instead of 0.84 s per 384-channel conv at 1024 px; the whole stem's backward 25 s
instead of 13 s; ``benchmarks/profile_train_step.py``, docs/benchmarks.md section 8). The helpers below change only
memory layout, never values.

Under CPU autocast (bf16) the trade-off flips: oneDNN runs bf16 convolutions channels-last and converted every NCHW
input and output gradient of Atlas-B's 2-D stem (1.2 s of copies in a 3.95 s profiled bf16 step at 1024 px on an AMX
Xeon), so there the 2-D stem works channels-last throughout (:func:`stem_memory_format`). CUDA keeps NCHW (not
measured there).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import nn

from atlas_vision.layers.channel_layer_norm import channel_layer_norm


def stem_memory_format(x_bchw: torch.Tensor) -> torch.memory_format:
    """The layout a 2-D conv stem works in for input ``x``: channels-last under CPU autocast, NCHW otherwise."""
    if x_bchw.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        return torch.channels_last
    return torch.contiguous_format


class _ContiguousGradient(torch.autograd.Function):
    """Identity forward; backward hands the incoming gradient on contiguous in ``memory_format``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
        ctx.memory_format = memory_format
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad.contiguous(memory_format=ctx.memory_format), None


def contiguous_gradient(x: torch.Tensor, memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """``x`` unchanged; the gradient that flows back through it is made contiguous in ``memory_format`` (NCHW by
    default; a no-op outside autograd)."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return x
    return _ContiguousGradient.apply(x, memory_format)


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
    """timm's ``LayerNorm2d`` (same parameters, same values) whose output and input gradient are contiguous in the
    stem's layout (:func:`stem_memory_format`): NCHW, or channels-last under CPU autocast.

    On CPU in fp32/fp64 it normalises without transposing
    (:func:`~atlas_vision.layers.channel_layer_norm.channel_layer_norm`); elsewhere it is timm's permute ->
    layer_norm -> permute (for a channels-last tensor both permutes are free), made contiguous in that layout.
    """

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        if _use_channel_layer_norm(self, x_bchw):
            return channel_layer_norm(x_bchw, self.weight, self.bias, self.eps)
        layout = stem_memory_format(x_bchw)
        return super().forward(contiguous_gradient(x_bchw, layout)).contiguous(memory_format=layout)


class ContiguousLayerNorm3d(nn.LayerNorm):
    """LayerNorm over the channels of a ``[B, C, D, H, W]`` map, with contiguous output and input gradient."""

    def forward(self, x_bcdhw: torch.Tensor) -> torch.Tensor:
        if _use_channel_layer_norm(self, x_bcdhw):
            return channel_layer_norm(x_bcdhw, self.weight, self.bias, self.eps)
        x = contiguous_gradient(x_bcdhw).movedim(1, -1)  # [B, D, H, W, C]
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.movedim(-1, 1).contiguous()  # [B, C, D, H, W]
