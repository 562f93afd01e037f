"""``benchmarks/step_flops.py``: its two formula fixes (CPU attention, grouped-conv backward) count what they claim."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def formulas():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from step_flops import FORMULAS

        yield FORMULAS
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def _count(fn, mapping) -> int:
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("groups", [1, 4, 12])
def test_conv_backward_counts_its_forward_once_per_gradient(formulas, groups):
    conv = torch.nn.Conv2d(12, 24, 3, stride=2, padding=1, groups=groups, bias=False)
    x = torch.randn(3, 12, 13, 10, requires_grad=True)
    # forward: 2 * (multiply-adds) = 2 * B * out_positions * C_out * (C_in / groups) * k * k
    expected_forward = 2 * 3 * 7 * 5 * 24 * (12 // groups) * 9
    assert _count(lambda: conv(x), formulas) == expected_forward
    y = conv(x)
    assert _count(lambda: y.sum().backward(), formulas) == 2 * expected_forward  # input and weight gradients
    if groups == 1:  # where torch's own formula is right, ours agrees with it
        y = conv(x)
        assert _count(lambda: y.sum().backward(), {}) == 2 * expected_forward


def test_cpu_attention_is_counted(formulas):
    q, k, v = (torch.randn(1, 2, n, 16, requires_grad=True) for n in (40, 24, 24))
    assert _count(lambda: F.scaled_dot_product_attention(q, k, v), {}) == 0  # the gap the script fills
    assert _count(lambda: F.scaled_dot_product_attention(q, k, v), formulas) == 2 * (2 * 2 * 40 * 24 * 16)
    out = F.scaled_dot_product_attention(q, k, v)
    assert _count(lambda: out.sum().backward(), formulas) > 0
