"""The conv stems keep activations and gradients in one layout (``atlas_vision.layers.contiguous``).

Only memory layout changes, so values and gradients must equal those of the plain permute-based LayerNorms; and every
stem convolution must be handed contiguous inputs and contiguous output gradients - a channels-last tensor reaching a
conv sends oneDNN down its 2-3x slower fp32 backward path on CPU (docs/benchmarks.md section 8). Under CPU autocast
(bf16) the 2-D stem works channels-last instead, where oneDNN's bf16 convs would otherwise convert every tensor.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import nn

from atlas_vision.layers import contiguous as contiguous_module
from atlas_vision.layers.contiguous import (
    ContiguousLayerNorm2d,
    ContiguousLayerNorm3d,
    contiguous_gradient,
    stem_memory_format,
)
from atlas_vision.layers.stem import ConvStem
from atlas_vision.layers.stem3d import ConvStem3d


def _record_conv_layouts(
    stem: nn.Module, memory_format: torch.memory_format = torch.contiguous_format
) -> list[tuple[str, str, bool]]:
    """Hooks recording, for every conv, whether its input and the gradient of its output were contiguous in
    ``memory_format``.

    Tensor hooks (not module backward hooks, which wrap the module and change what reaches it) see the gradient as
    autograd hands it to the conv's backward.
    """
    seen: list[tuple[str, str, bool]] = []
    for name, module in stem.named_modules():
        if isinstance(module, nn.Conv2d | nn.Conv3d):

            def hook(mod, inputs, output, name=name):
                seen.append((name, "input", inputs[0].is_contiguous(memory_format=memory_format)))
                if output.requires_grad:
                    output.register_hook(
                        lambda g, name=name: seen.append(
                            (name, "grad_output", g.is_contiguous(memory_format=memory_format))
                        )
                    )

            module.register_forward_hook(hook)
    return seen


def _backward_through(stem: nn.Module, x: torch.Tensor) -> None:
    tokens = stem(x)  # [B, h, w, C] or [B, d, h, w, C]: a channels-last view of the conv output
    (tokens * torch.randn_like(tokens)).sum().backward()


def test_stem_convs_get_contiguous_inputs_and_gradients():
    torch.manual_seed(0)
    stem = ConvStem(3, 64, patch_size=16, hidden=16, depth=1)  # two stem stages: two LayerNorms in the path
    seen = _record_conv_layouts(stem)
    _backward_through(stem, torch.randn(3, 3, 70, 90))
    convs = sum(isinstance(m, nn.Conv2d) for m in stem.modules())
    assert len([s for s in seen if s[1] == "grad_output"]) == convs  # every conv output needs a gradient
    bad = [s for s in seen if not s[2]]
    assert not bad, f"channels-last tensors reached stem convs: {bad}"


def test_stem_convs_work_channels_last_under_cpu_autocast():
    torch.manual_seed(0)
    stem = ConvStem(3, 64, patch_size=16, hidden=16, depth=1)
    seen = _record_conv_layouts(stem, torch.channels_last)
    x = torch.randn(3, 3, 70, 90)
    assert stem_memory_format(x) is torch.contiguous_format
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert stem_memory_format(x) is torch.channels_last
        tokens = stem(x)
    assert tokens.is_contiguous() and tokens.shape == (3, 5, 6, 64)
    (tokens.float() * torch.randn(tokens.shape)).sum().backward()
    convs = sum(isinstance(m, nn.Conv2d) for m in stem.modules())
    assert len([s for s in seen if s[1] == "grad_output"]) == convs
    bad = [s for s in seen if not s[2]]
    assert not bad, f"NCHW tensors reached stem convs under autocast: {bad}"


def test_channels_last_stem_under_autocast_computes_the_nchw_stem(monkeypatch: pytest.MonkeyPatch):
    """Same values and gradients as the same stem kept NCHW under autocast (to bf16 rounding: oneDNN may sum in
    another order per layout); a permuted layout mix-up would differ by O(1)."""
    torch.manual_seed(0)
    stem = ConvStem(3, 32, patch_size=8, hidden=8, depth=1)
    x = torch.randn(1, 3, 40, 56)
    cotangent = torch.randn(1, 5, 7, 32)
    results = []
    for layout in (torch.channels_last, torch.contiguous_format):
        monkeypatch.setattr(contiguous_module, "stem_memory_format", lambda t, layout=layout: layout)
        monkeypatch.setattr("atlas_vision.layers.stem.stem_memory_format", lambda t, layout=layout: layout)
        stem.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            tokens = stem(xi)
        (tokens.float() * cotangent).sum().backward()
        results.append((tokens.float(), xi.grad, stem.conv0[0].weight.grad, stem.stages[0][0].conv1.weight.grad))
    for a, b in zip(*results, strict=True):
        scale = b.abs().max()
        assert (a - b).abs().max() <= 0.05 * scale, ((a - b).abs().max(), scale)


def test_stem3d_convs_get_contiguous_inputs_and_gradients():
    torch.manual_seed(0)
    stem = ConvStem3d(1, 32, patch_size=(4, 8, 8), hidden=8, depth=1)
    seen = _record_conv_layouts(stem)
    _backward_through(stem, torch.randn(1, 1, 12, 20, 28))
    assert seen and not [s for s in seen if not s[2]], [s for s in seen if not s[2]]


def test_contiguous_layernorm2d_equals_timm_layernorm2d_forward_and_backward():
    torch.manual_seed(0)
    plain, contiguous = LayerNorm2d(12), ContiguousLayerNorm2d(12)
    with torch.no_grad():
        plain.weight.normal_(), plain.bias.normal_()
    contiguous.load_state_dict(plain.state_dict())  # same parameter names: checkpoints load unchanged
    x = torch.randn(3, 12, 7, 9, dtype=torch.float64)
    plain, contiguous = plain.double(), contiguous.double()
    grads = []
    for norm in (plain, contiguous):
        xi = x.clone().requires_grad_(True)
        y = norm(xi)
        y.backward(torch.cos(torch.arange(y.numel(), dtype=y.dtype)).view_as(y))
        grads.append((y.detach(), xi.grad, norm.weight.grad, norm.bias.grad))
    assert grads[1][0].is_contiguous() and grads[1][1].is_contiguous()
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_contiguous_layernorm3d_is_a_channel_layernorm():
    torch.manual_seed(0)
    norm = ContiguousLayerNorm3d(5).double()
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
    x = torch.randn(2, 5, 3, 4, 6, dtype=torch.float64, requires_grad=True)
    y = norm(x)
    expected = F.layer_norm(x.detach().movedim(1, -1), (5,), norm.weight, norm.bias, norm.eps).movedim(-1, 1)
    assert y.is_contiguous()
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)
    torch.autograd.gradcheck(lambda t: norm(t), (x[:1, :, :2, :2, :3].detach().clone().requires_grad_(True),))


def test_contiguous_gradient_is_identity_and_free_outside_autograd():
    x = torch.randn(2, 3, 4, 5)
    assert contiguous_gradient(x) is x  # no autograd: the very tensor comes back
    xg = torch.randn(2, 3, 4, 5, requires_grad=True)
    y = contiguous_gradient(xg)
    assert torch.equal(y, xg)
    y.permute(0, 2, 3, 1).mul(torch.ones(2, 4, 5, 3)).sum().backward()
    assert xg.grad is not None and xg.grad.is_contiguous()
    # a non-leaf, so the hook sees the gradient as handed on (a leaf's .grad takes the leaf's own strides)
    inner = torch.randn(2, 3, 4, 5, requires_grad=True).mul(1.0)
    grads = []
    inner.register_hook(grads.append)
    contiguous_gradient(inner, torch.channels_last).mul(torch.ones(2, 3, 4, 5)).sum().backward()
    assert grads[0].is_contiguous(memory_format=torch.channels_last) and not grads[0].is_contiguous()


def test_stem_variants_benchmark_runs_every_variant(monkeypatch, capsys):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "stem_variants.py"
    spec = importlib.util.spec_from_file_location("stem_variants", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["stem_variants", "--model", "test_atlas", "--px", "48", "--rounds", "1"])
    assert module.main() == 0
    rows = [line.split(",") for line in capsys.readouterr().out.splitlines() if not line.startswith("#")]
    assert rows[0] == ["variant", "round", "forward_s", "backward_s"]
    assert [r[0] for r in rows[1:]] == list(module.VARIANTS)
