"""``channel_layer_norm`` (a LayerNorm over dim 1 computed as a per-image batch norm) against ``F.layer_norm``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from atlas_vision.layers.channel_layer_norm import channel_layer_norm
from atlas_vision.layers.contiguous import ContiguousLayerNorm2d


def _reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    return F.layer_norm(x.movedim(1, -1), (x.shape[1],), weight, bias, eps).movedim(-1, 1)


@pytest.mark.parametrize("shape", [(1, 6, 5, 7), (3, 4, 9, 2), (1, 3, 1, 1), (3, 5, 2, 3, 4)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_values_and_gradients_equal_layer_norm(shape, dtype):
    gen = torch.Generator().manual_seed(sum(shape))
    x = (3 * torch.randn(*shape, generator=gen, dtype=dtype) + 1).requires_grad_(True)
    weight = torch.randn(shape[1], generator=gen, dtype=dtype).requires_grad_(True)
    bias = torch.randn(shape[1], generator=gen, dtype=dtype).requires_grad_(True)
    grad = torch.randn(*shape, generator=gen, dtype=dtype)
    fast = channel_layer_norm(x, weight, bias, 1e-6)
    slow = _reference(x, weight, bias, 1e-6)
    assert fast.is_contiguous() and fast.shape == x.shape
    fast_grads = torch.autograd.grad(fast, (x, weight, bias), grad)
    slow_grads = torch.autograd.grad(slow, (x, weight, bias), grad)
    tol = {"rtol": 0, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-5}
    torch.testing.assert_close(fast, slow, **tol)
    assert fast_grads[0].is_contiguous()
    for a, b in zip(fast_grads, slow_grads, strict=True):
        torch.testing.assert_close(a, b, **tol)


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w, b: channel_layer_norm(a, w, b, 1e-5), (x, weight, bias))


def test_frozen_affine_and_input_without_gradient():
    x = torch.randn(2, 4, 3, 5)
    weight, bias = torch.randn(4, requires_grad=True), torch.randn(4)
    channel_layer_norm(x, weight, bias, 1e-6).square().sum().backward()  # only the weight needs a gradient
    expected = torch.autograd.grad(_reference(x, weight, bias, 1e-6).square().sum(), weight)[0]
    torch.testing.assert_close(weight.grad, expected, rtol=1e-4, atol=1e-5)


def test_module_falls_back_for_bfloat16_and_autocast():
    norm = ContiguousLayerNorm2d(6)
    x = torch.randn(2, 6, 4, 5)
    expected = _reference(x, norm.weight, norm.bias, norm.eps)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = norm(x)  # timm's path: autocast runs layer_norm in float32
    torch.testing.assert_close(y.float(), expected, rtol=1e-2, atol=1e-2)
    y16 = norm.bfloat16()(x.bfloat16())
    assert y16.dtype == torch.bfloat16 and y16.is_contiguous()
    torch.testing.assert_close(y16.float(), expected, rtol=5e-2, atol=5e-2)
