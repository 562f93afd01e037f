"""Winograd F(2x2, 3x3) (``layers/winograd.py``) against PyTorch's convolution: forward, both gradients, bands, error."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from atlas_vision.layers import winograd
from atlas_vision.layers.winograd import (
    transform_weight,
    winograd_conv3x3,
    winograd_conv3x3_input_gradient,
    winograd_conv3x3_weight_gradient,
)

SHAPES = [  # (batch, in_channels, out_channels, height, width): odd, non-square, one row / column, batch 1 and 3
    (1, 5, 4, 7, 11),
    (3, 3, 6, 9, 6),
    (1, 2, 3, 1, 1),
    (3, 4, 2, 2, 13),
    (2, 3, 2, 1, 6),
    (1, 3, 4, 5, 1),
    (3, 2, 5, 10, 8),
]


def _case(shape, dtype=torch.float64, seed=0):
    batch, cin, cout, height, width = shape
    gen = torch.Generator().manual_seed(seed + sum(shape))
    x = torch.randn(batch, cin, height, width, generator=gen, dtype=dtype)
    w = torch.randn(cout, cin, 3, 3, generator=gen, dtype=dtype)
    b = torch.randn(cout, generator=gen, dtype=dtype)
    grad = torch.randn(batch, cout, height, width, generator=gen, dtype=dtype)
    return x, w, b, grad


@pytest.mark.parametrize("band_bytes", [1, 2**40], ids=["one-tile-row-bands", "one-band"])
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_gradients_equal_torch_float64(shape, band_bytes, monkeypatch):
    monkeypatch.setattr(winograd, "BAND_BYTES", band_bytes)
    x, w, b, grad = _case(shape)
    tol = {"rtol": 0, "atol": 1e-12}
    torch.testing.assert_close(winograd_conv3x3(x, transform_weight(w), b), F.conv2d(x, w, b, padding=1), **tol)
    torch.testing.assert_close(
        winograd_conv3x3_input_gradient(grad, w), torch.nn.grad.conv2d_input(x.shape, w, grad, padding=1), **tol
    )
    torch.testing.assert_close(
        winograd_conv3x3_weight_gradient(grad, x), torch.nn.grad.conv2d_weight(x, w.shape, grad, padding=1), **tol
    )


def test_bands_bound_the_transformed_input(monkeypatch):
    """Each band's transformed input stays under BAND_BYTES (one tile row when even that is larger)."""
    band_bytes = 40_000
    monkeypatch.setattr(winograd, "BAND_BYTES", band_bytes)
    sizes = []
    real = winograd._transform_input_band

    def recording(xp_band, rows, cols):
        v = real(xp_band, rows, cols)
        sizes.append((rows, v.numel() * v.element_size()))
        return v

    monkeypatch.setattr(winograd, "_transform_input_band", recording)
    x, w, b, grad = _case((2, 8, 8, 37, 30), dtype=torch.float32)
    y = winograd_conv3x3(x, transform_weight(w), b)
    one_row = 16 * 8 * 2 * 15 * 4  # 16 positions x C x B x tiles across x 4 bytes
    assert sum(rows for rows, _ in sizes) == 19  # every tile row once
    assert len(sizes) > 1 and all(size <= max(band_bytes, one_row) for _, size in sizes)
    torch.testing.assert_close(y, F.conv2d(x, w, b, padding=1), rtol=1e-5, atol=1e-5)
    sizes.clear()
    winograd_conv3x3_weight_gradient(grad, x)
    assert sum(rows for rows, _ in sizes) == 19 and all(size <= max(band_bytes, one_row) for _, size in sizes)


def test_float32_error_is_that_of_a_direct_convolution():
    """On a stem-like layer the fp32 error against float64 is no worse than oneDNN's direct convolution's (x2)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 96, 40, 56, generator=gen)
    w = torch.randn(96, 96, 3, 3, generator=gen) * (2 / (9 * 96)) ** 0.5
    grad = torch.randn(1, 96, 40, 56, generator=gen)
    exact = [
        F.conv2d(x.double(), w.double(), padding=1),
        torch.nn.grad.conv2d_input(x.shape, w.double(), grad.double(), padding=1),
        torch.nn.grad.conv2d_weight(x.double(), w.shape, grad.double(), padding=1),
    ]
    direct = [
        F.conv2d(x, w, padding=1),
        torch.nn.grad.conv2d_input(x.shape, w, grad, padding=1),
        torch.nn.grad.conv2d_weight(x, w.shape, grad, padding=1),
    ]
    fast = [
        winograd_conv3x3(x, transform_weight(w)),
        winograd_conv3x3_input_gradient(grad, w),
        winograd_conv3x3_weight_gradient(grad, x),
    ]
    for name, want, base, got in zip(("forward", "input grad", "weight grad"), exact, direct, fast, strict=True):
        scale = want.abs().max().item()
        err_fast = (got.double() - want).abs().max().item() / scale
        err_direct = (base.double() - want).abs().max().item() / scale
        assert err_fast < 1e-5, (name, err_fast)
        assert err_fast <= 2 * err_direct + 1e-7, (name, err_fast, err_direct)


def test_weight_transform_round_trip_shapes():
    w = torch.randn(5, 3, 3, 3, dtype=torch.float64)
    assert transform_weight(w).shape == (16, 5, 3)
    assert winograd.weight_from_transformed(transform_weight(w)).shape == (5, 3, 3, 3)
    assert winograd.tile_counts(7, 1) == (4, 1)
