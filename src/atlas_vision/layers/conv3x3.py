"""A 3x3, stride-1, padding-1 convolution with CPU fast paths: Winograd F(2x2, 3x3) by default, or chosen per shape.

``Conv3x3`` is ``nn.Conv2d(in, out, 3, padding=1)`` (same parameters, names and values). On CPU, in float32/float64,
outside autocast and compilers, it runs one of these algorithms, chosen by ``conv3x3_cpu_algorithm`` (a context
manager; default ``"winograd"``):

- ``"winograd"`` (``layers/winograd.py``): forward, input gradient and weight gradient each as 16 GEMMs over
  Winograd-transformed 2x2 output tiles, 4/9 of the direct arithmetic. With and without autograd.
- ``"plain"``: ``nn.Conv2d`` itself (oneDNN forward and both gradients in float32).
- ``"direct"``: oneDNN's forward and input gradient, and the weight gradient as nine GEMMs over shifted views (below);
  without autograd a plain ``nn.Conv2d``. This was the fast path for Atlas-B's stem before Winograd; kept to compare.
- ``"auto"``: ``"winograd"`` where both channel counts are >= ``WINOGRAD_MIN_CHANNELS`` and the image has >=
  ``WINOGRAD_MIN_POSITIONS`` positions, else ``"plain"``. Winograd's transforms cost per tile and channel while its
  saving is per channel *pair*, so with few channels (or few tiles per image) the transforms dominate. Not the
  default although it was never more than 1.09x slower than the fastest algorithm (Winograd alone: 2.1x): it changes the rounding of the default run's ``atlas_tiny``
  (32-channel convs), whose five seeds were verified with Winograd, and that recipe proved sensitive to rounding (with
  ``auto``, 2 threads and 20 epochs, seed 4 stayed at chance; ``docs/benchmarks.md`` section 6). Opt in with
  ``with conv3x3_cpu_algorithm("auto"):``.
  Measured on the 2-core Zen 1 EPYC, fp32, 2026-12-06 (``python benchmarks/conv3x3_algorithms.py --threads 1 2``;
  all 192 rows, inference too, in ``docs/bench-core/conv3x3_algorithms_zen1.csv``; ``docs/benchmarks.md`` section 8),
  one forward + backward, median ms, 2 threads (1 thread in brackets); across all its shapes ``auto`` was within
  1.09x of the fastest algorithm, ``winograd`` alone up to 2.1x slower:

  =================================  ============  ============  ============  ==========
  batch, channels, height x width     winograd      plain         direct        auto
  =================================  ============  ============  ============  ==========
  64, 32, 16x16 (the default run)    32 (46)       17 (26)       62 (54)       plain
  64, 96, 16x16                      142 (234)     125 (214)     181 (249)     plain
  64, 128, 16x16                     208 (345)     219 (376)     276 (428)     plain
  1, 64, 256x256                     230 (373)     248 (406)     251 (405)     plain
  1, 96, 256x256 (Atlas-S stem)      449 (662)     519 (884)     524 (853)     winograd
  16, 192, 32x32                     355 (590)     484 (833)     498 (807)     winograd
  1, 384, 128x128 (Atlas-B stem)     1066 (1723)   1994 (3417)   1872 (3177)   winograd
  =================================  ============  ============  ============  ==========

Elsewhere (CUDA, where cuDNN picks its own algorithms; autocast; ``torch.compile`` / tracing / export) the module is a
plain ``nn.Conv2d``.

The direct weight gradient. On the 2-core development CPU oneDNN computes the weight gradient of the stem's
384-channel 3x3 convs in ~1.6x their forward time (0.59 s against 0.37 s at 128x128, fp32, 2 threads); the same
gradient as nine matrix products runs at forward speed (0.38 s; 0.44 s for the 192-channel convs at 256x256). With
input and output gradient flattened to ``[B, C, H * W]`` and ``[B, K, H * W]``, tap ``(i, j)`` (offset ``(dy, dx) =
(i - 1, j - 1)``) pairs output position ``p`` with input position ``p + s``, ``s = dy * W + dx``, so it is one product
over strided views -- no padding, no im2col copy::

    dW[:, :, i, j] = sum_b  g[b, :, p0:p1] @ x[b, :, p0 + s : p1 + s].T      (p0, p1: where p + s is in range)

For ``dx = -1`` (``+1``) the flat shift wraps output column 0 (``W - 1``) onto the neighbouring row's last (first)
input column, a position the zero padding would have hidden; those ``H`` products are subtracted again as one small
GEMM over the wrapped column (stride ``W`` views).

Both paths are checked against PyTorch's convolution in float64 and float32 on odd, non-square shapes and batches 1
and 3 (tests/test_conv3x3.py, tests/test_winograd.py).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from atlas_vision.layers.winograd import (
    transform_weight,
    winograd_conv3x3,
    winograd_conv3x3_input_gradient,
    winograd_conv3x3_weight_gradient,
)
from atlas_vision.ops.grad_mode import needs_grad


def conv3x3_weight_gradient(grad_bkhw: torch.Tensor, x_bchw: torch.Tensor) -> torch.Tensor:
    """Weight gradient ``[K, C, 3, 3]`` of ``conv2d(x, w, stride=1, padding=1)`` for output gradient ``grad``."""
    batch, channels, height, width = x_bchw.shape
    out_channels = grad_bkhw.shape[1]
    length = height * width
    x_flat = x_bchw.reshape(batch, channels, length)  # [B, C, H*W] (a view of a contiguous input)
    g_flat = grad_bkhw.reshape(batch, out_channels, length)  # [B, K, H*W]
    taps = x_bchw.new_empty(3, 3, out_channels, channels)  # [i, j, K, C]
    for i in range(3):
        for j in range(3):
            shift = (i - 1) * width + (j - 1)
            p0, p1 = max(0, -shift), min(length, length - shift)  # output positions whose p + shift is in range
            tap = taps[i, j]  # [K, C]
            if p1 <= p0:  # an image too small for this tap to see anything (H == 1 and W == 1, or H == 1 and dy != 0)
                tap.zero_()
                continue
            # the output column whose shifted input wrapped to the neighbouring row, and its first position >= p0
            wrapped_col = 0 if j == 0 else width - 1
            w0 = p0 + (wrapped_col - p0) % width
            for b in range(batch):
                g, x = g_flat[b], x_flat[b]
                if b == 0:
                    torch.mm(g[:, p0:p1], x[:, p0 + shift : p1 + shift].t(), out=tap)  # [K, L] @ [L, C]
                else:
                    tap.addmm_(g[:, p0:p1], x[:, p0 + shift : p1 + shift].t())
                if j != 1 and w0 < p1:  # take back the wrapped pairs: [K, ~H] @ [~H, C]
                    tap.addmm_(g[:, w0:p1:width], x[:, w0 + shift : p1 + shift : width].t(), alpha=-1)
    return taps.permute(2, 3, 0, 1).contiguous()  # [K, C, 3, 3]


ALGORITHMS = ("auto", "winograd", "plain", "direct")
WINOGRAD_MIN_CHANNELS = 96
"""``auto`` takes Winograd only where input and output both have at least this many channels (module docstring)."""
WINOGRAD_MIN_POSITIONS = 32 * 32
"""... and the image at least this many positions (``H * W``); below, ``auto`` runs the plain convolution."""
_cpu_algorithm: contextvars.ContextVar[str] = contextvars.ContextVar("conv3x3_cpu_algorithm", default="winograd")


@contextlib.contextmanager
def conv3x3_cpu_algorithm(name: str) -> Iterator[None]:
    """Run ``Conv3x3`` on CPU with ``name`` (one of ``ALGORITHMS``) inside the ``with`` block.

    The choice is made when a convolution runs forward; its backward uses the same algorithm wherever it runs.
    """
    if name not in ALGORITHMS:
        raise ValueError(f"conv3x3_cpu_algorithm: unknown algorithm {name!r}; valid: {', '.join(ALGORITHMS)}")
    token = _cpu_algorithm.set(name)
    try:
        yield
    finally:
        _cpu_algorithm.reset(token)


def current_cpu_algorithm() -> str:
    """The algorithm ``Conv3x3`` is set to use on CPU here (``"winograd"`` unless ``conv3x3_cpu_algorithm`` says so)."""
    return _cpu_algorithm.get()


def auto_cpu_algorithm(x_bchw: torch.Tensor, weight_kc33: torch.Tensor) -> str:
    """What ``"auto"`` runs for this input and weight: ``"winograd"`` or ``"plain"`` (thresholds in the module doc)."""
    out_channels, in_channels = weight_kc33.shape[:2]
    height, width = x_bchw.shape[-2:]
    many_channels = min(in_channels, out_channels) >= WINOGRAD_MIN_CHANNELS
    return "winograd" if many_channels and height * width >= WINOGRAD_MIN_POSITIONS else "plain"


def _direct_input_gradient(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    # aten's op with the saved input itself: torch.nn.grad.conv2d_input would pass an expanded dummy that oneDNN then
    # copies to a full [B, C, H, W] buffer first
    return torch.ops.aten.convolution_backward(
        grad, x, weight, None, (1, 1), (1, 1), (1, 1), False, (0, 0), 1, (True, False, False)
    )[0]


class _Conv3x3(torch.autograd.Function):
    """The CPU fast paths with autograd; ``algorithm`` picks forward and both gradients.

    ``"winograd"``: all three by Winograd F(2x2, 3x3) (``layers/winograd.py``). ``"direct"``: oneDNN's forward and
    input gradient, the weight gradient as nine GEMMs (``conv3x3_weight_gradient``).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, algorithm: str) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.winograd = algorithm == "winograd"
        if ctx.winograd:
            return winograd_conv3x3(x, transform_weight(weight), bias)
        return F.conv2d(x, weight, bias, stride=1, padding=1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            if ctx.winograd:
                grad_x = winograd_conv3x3_input_gradient(grad, weight)
            else:
                grad_x = _direct_input_gradient(grad, x, weight)
        if ctx.needs_input_grad[1]:
            weight_gradient = winograd_conv3x3_weight_gradient if ctx.winograd else conv3x3_weight_gradient
            grad_w = weight_gradient(grad, x)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None


def _takes_cpu_fast_path(x_bchw: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        not torch.compiler.is_compiling()  # tracing, export: a compiler picks its own convolution
        and not torch.jit.is_tracing()
        and x_bchw.device.type == "cpu"
        and not torch.is_autocast_enabled("cpu")  # autocast casts inside F.conv2d; the plain path handles it
        and x_bchw.dtype == weight.dtype
        and x_bchw.dtype in (torch.float32, torch.float64)
        and x_bchw.dim() == 4
        and x_bchw.numel() > 0
    )


class Conv3x3(nn.Conv2d):
    """``nn.Conv2d(in, out, 3, padding=1)`` (same parameters and values) with the CPU fast paths (module docstring)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        bias: bool = True,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__(in_channels, out_channels, 3, padding=1, bias=bias, device=device, dtype=dtype)

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        if not _takes_cpu_fast_path(x_bchw, self.weight):
            return super().forward(x_bchw)
        algorithm = current_cpu_algorithm()
        if algorithm == "auto":
            algorithm = auto_cpu_algorithm(x_bchw, self.weight)
        if algorithm == "plain":
            return super().forward(x_bchw)
        grad = needs_grad(x_bchw, *(p for p in (self.weight, self.bias) if p is not None))
        if algorithm == "winograd":
            if grad:
                return _Conv3x3.apply(x_bchw, self.weight, self.bias, algorithm)
            return winograd_conv3x3(x_bchw, transform_weight(self.weight), self.bias)
        if grad and self.weight.requires_grad:  # direct: only the weight gradient has a fast path
            return _Conv3x3.apply(x_bchw, self.weight, self.bias, algorithm)
        return super().forward(x_bchw)
