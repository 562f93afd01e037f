"""The conv stems keep activations and gradients NCHW-contiguous (``atlas_vision.layers.contiguous``).

Only memory layout changes, so values and gradients must equal those of the plain permute-based LayerNorms; and every
stem convolution must be handed contiguous inputs and contiguous output gradients - a channels-last tensor reaching a
conv sends oneDNN down its 2-3x slower backward path on CPU (docs/benchmarks.md section 8).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import nn

from atlas_vision.layers.contiguous import ContiguousLayerNorm2d, ContiguousLayerNorm3d, contiguous_gradient
from atlas_vision.layers.stem import ConvStem
from atlas_vision.layers.stem3d import ConvStem3d


def _record_conv_layouts(stem: nn.Module) -> list[tuple[str, str, bool]]:
    """Hooks recording, for every conv, whether its input and the gradient of its output were contiguous.

    Tensor hooks (not module backward hooks, which wrap the module and change what reaches it) see the gradient as
    autograd hands it to the conv's backward.
    """
    seen: list[tuple[str, str, bool]] = []
    for name, module in stem.named_modules():
        if isinstance(module, nn.Conv2d | nn.Conv3d):

            def hook(mod, inputs, output, name=name):
                seen.append((name, "input", inputs[0].is_contiguous()))
                if output.requires_grad:
                    output.register_hook(lambda g, name=name: seen.append((name, "grad_output", g.is_contiguous())))

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
