"""``Conv3x3``'s CPU algorithms (auto, Winograd, plain, direct) against PyTorch's convolution, forward and backward,
on awkward shapes; which one ``auto`` runs."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from atlas_vision.layers import conv3x3 as conv3x3_module
from atlas_vision.layers.conv3x3 import (
    ALGORITHMS,
    WINOGRAD_MIN_CHANNELS,
    WINOGRAD_MIN_POSITIONS,
    Conv3x3,
    conv3x3_cpu_algorithm,
    conv3x3_weight_gradient,
)

SHAPES = [  # (batch, in_channels, out_channels, height, width)
    (1, 5, 4, 7, 11),
    (3, 3, 6, 9, 6),
    (1, 2, 3, 1, 1),
    (3, 4, 2, 2, 13),
    (2, 3, 2, 1, 6),  # one row: the dy = +-1 taps see only padding
    (1, 3, 4, 5, 1),  # one column: every dx = +-1 pair wraps
    (1, 2, 2, 2, 2),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_weight_gradient_equals_torch_float64(shape):
    batch, cin, cout, height, width = shape
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(batch, cin, height, width, generator=gen, dtype=torch.float64)
    grad = torch.randn(batch, cout, height, width, generator=gen, dtype=torch.float64)
    expected = torch.nn.grad.conv2d_weight(x, (cout, cin, 3, 3), grad, stride=1, padding=1)
    torch.testing.assert_close(conv3x3_weight_gradient(grad, x), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_module_forward_and_backward_equal_nn_conv2d(shape, bias, dtype, algorithm):
    batch, cin, cout, height, width = shape
    torch.manual_seed(0)
    fast = Conv3x3(cin, cout, bias=bias).to(dtype)
    plain = nn.Conv2d(cin, cout, 3, padding=1, bias=bias).to(dtype)
    plain.load_state_dict(fast.state_dict())  # same parameter names and shapes
    x = torch.randn(batch, cin, height, width, dtype=dtype)
    seed = torch.randn(batch, cout, height, width, dtype=dtype)
    results = []
    for conv in (fast, plain):
        xi = x.clone().requires_grad_(True)
        with conv3x3_cpu_algorithm(algorithm):
            y = conv(xi)
        (y * seed).sum().backward()
        results.append([y.detach(), xi.grad] + [p.grad for p in conv.parameters()])
    tol = {"rtol": 0, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5}
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, **tol)


def test_input_without_grad_and_frozen_weights():
    torch.manual_seed(0)
    conv = Conv3x3(3, 4).double()
    x = torch.randn(3, 3, 5, 8, dtype=torch.float64)
    y = conv(x)  # input needs no gradient: only the weight and bias get one
    y.sum().backward()
    expected = torch.nn.grad.conv2d_weight(x, conv.weight.shape, torch.ones_like(y), stride=1, padding=1)
    torch.testing.assert_close(conv.weight.grad, expected, rtol=0, atol=1e-12)
    conv.requires_grad_(False)
    xi = x.clone().requires_grad_(True)
    conv(xi).sum().backward()  # frozen conv: the plain path still gives the input gradient
    assert xi.grad is not None and conv.weight.grad is not None
    with torch.no_grad():
        torch.testing.assert_close(conv(x), nn.functional.conv2d(x, conv.weight, conv.bias, padding=1))


def test_cpu_autocast_bf16_takes_the_plain_path():
    torch.manual_seed(0)
    conv = Conv3x3(3, 4)
    x = torch.randn(1, 3, 5, 6, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()  # the fast path would mix a bf16 gradient with fp32 saved tensors here
    assert x.grad is not None and conv.weight.grad is not None and conv.weight.grad.dtype == torch.float32


def _count_calls(monkeypatch, name):
    calls = []
    real = getattr(conv3x3_module, name)

    def counting(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(conv3x3_module, name, counting)
    return calls


@pytest.mark.parametrize("grad_mode", ["train", "frozen", "no_grad"])
@pytest.mark.parametrize(
    ("channels", "side", "auto_is_winograd"),
    [
        (3, 7, False),  # few channels: the plain convolution
        (WINOGRAD_MIN_CHANNELS, 32, True),  # at both thresholds (32 x 32 = WINOGRAD_MIN_POSITIONS)
        (WINOGRAD_MIN_CHANNELS - 1, 32, False),  # one channel short
        (WINOGRAD_MIN_CHANNELS, 31, False),  # 31 x 31 positions: too few
    ],
)
def test_winograd_is_the_default_and_auto_takes_it_only_above_both_thresholds(
    monkeypatch, grad_mode, channels, side, auto_is_winograd
):
    assert WINOGRAD_MIN_POSITIONS == 32 * 32  # the cases above are built on it
    forward = _count_calls(monkeypatch, "winograd_conv3x3")
    input_grad = _count_calls(monkeypatch, "winograd_conv3x3_input_gradient")
    torch.manual_seed(0)
    conv = Conv3x3(channels, channels).double().requires_grad_(grad_mode == "train")
    x = torch.randn(1, channels, side, side, dtype=torch.float64, requires_grad=grad_mode != "no_grad")
    expected = nn.functional.conv2d(x.detach(), conv.weight.detach(), conv.bias.detach(), padding=1)
    want_grad_x = torch.nn.grad.conv2d_input(x.shape, conv.weight.detach(), torch.ones_like(expected), padding=1)
    for algorithm in (None, *ALGORITHMS):  # None: no context, the default
        forward.clear()
        input_grad.clear()
        context = conv3x3_cpu_algorithm(algorithm) if algorithm else contextlib.nullcontext()
        with context, torch.set_grad_enabled(grad_mode != "no_grad"):
            y = conv(x)
        torch.testing.assert_close(y.detach(), expected, rtol=0, atol=1e-10)
        winograd_calls = int(algorithm in (None, "winograd") or (algorithm == "auto" and auto_is_winograd))
        assert len(forward) == winograd_calls, (algorithm, forward)
        if grad_mode != "no_grad":
            (grad_x,) = torch.autograd.grad(y.sum(), x)
            torch.testing.assert_close(grad_x, want_grad_x, rtol=0, atol=1e-10)
            assert len(input_grad) == winograd_calls  # the backward follows the forward's choice


def test_both_algorithms_pass_gradcheck():
    torch.manual_seed(0)
    conv = Conv3x3(2, 3).double()
    x = torch.randn(3, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    inputs = (x, conv.weight, conv.bias)
    for algorithm in ("winograd", "direct"):
        assert torch.autograd.gradcheck(
            lambda a, w, b, name=algorithm: conv3x3_module._Conv3x3.apply(a, w, b, name), inputs
        )


def test_unknown_algorithm_is_a_clear_error():
    with pytest.raises(ValueError, match=r"'fft'.*valid: auto, winograd, plain, direct"), conv3x3_cpu_algorithm("fft"):
        pass
    assert conv3x3_module.current_cpu_algorithm() == "winograd"
