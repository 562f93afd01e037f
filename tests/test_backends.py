"""Backend declarations: what each backend says it supports, how ``auto`` chooses, and errors for forced backends."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from atlas_vision.layers import MSABlock
from atlas_vision.ops import (
    BACKENDS,
    Backend,
    MultiScaleLayout,
    Pass,
    bottomup_attention,
    dispatch,
    resolve_backend,
    topdown_attention,
)

LAYOUT = MultiScaleLayout.from_grid((10, 7), 4, 2)  # 10x7 -> 5x4 -> 3x2: padded windows, 3 scales


def _maps(dtype=torch.float32, requires_grad=False):
    return [
        [torch.randn(2, *g.grid, 2, 4, dtype=dtype, requires_grad=requires_grad) for g in LAYOUT.scales]
        for _ in range(3)
    ]


def _replace_spec(monkeypatch, backend: Backend, **changes) -> None:
    """Swap one declaration of the registry for a modified copy (for the duration of a test)."""
    specs = tuple(dataclasses.replace(s, **changes) if s.backend is backend else s for s in BACKENDS)
    monkeypatch.setattr(dispatch, "BACKENDS", specs)
    monkeypatch.setattr(dispatch, "_BY_BACKEND", {s.backend: s for s in specs})


def test_every_enum_member_but_auto_is_declared_once():
    assert sorted(s.backend.value for s in BACKENDS) == sorted(b.value for b in Backend if b is not Backend.AUTO)


@pytest.mark.parametrize("spec", BACKENDS, ids=lambda s: s.backend.value)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_declared_backends_run_both_passes_on_cpu(spec, dtype):
    """What is declared runs: every backend claims both passes and these dtypes on CPU and runs them forward; where
    it declares autograd on CPU it runs backward too, and where it does not (flex) a backward is refused up front."""
    q = torch.zeros(1, 4, 4, 2, 8, dtype=dtype)
    differentiable = spec.autograd_devices is None or "cpu" in spec.autograd_devices
    for pass_ in Pass:
        assert spec.not_supported_reasons(pass_, q, needs_grad=False) == []
        grad_reasons = spec.not_supported_reasons(pass_, q, needs_grad=True)
        assert grad_reasons == [] if differentiable else any("no backward on device 'cpu'" in r for r in grad_reasons)
    qs, ks, vs = _maps(dtype, requires_grad=differentiable)
    with torch.set_grad_enabled(differentiable):
        out = topdown_attention(qs[0], ks, vs, LAYOUT, 0, backend=spec.backend)
        out_bu = bottomup_attention(qs[1], ks[0], vs[0], LAYOUT, 1, backend=spec.backend)
    assert out.dtype == out_bu.dtype == dtype and out.shape == qs[0].shape and out_bu.shape == qs[1].shape
    if differentiable:
        (out.float().sum() + out_bu.float().sum()).backward()
        assert qs[0].grad is not None and ks[0].grad is not None


@pytest.mark.parametrize(
    "dtype,topdown,bottomup",
    [
        (torch.float32, Backend.SPLIT, Backend.SDPA),  # fused CPU kernels for top-down; bottom-up stays on SDPA
        (torch.float64, Backend.SPLIT, Backend.SDPA),
        (torch.float16, Backend.SDPA, Backend.SDPA),  # no fused CPU kernel for fp16
    ],
    ids=str,
)
def test_auto_keeps_the_measured_choices_on_cpu(dtype, topdown, bottomup):
    q = torch.zeros(1, 4, 4, 2, 8, dtype=dtype)
    assert resolve_backend(None, Pass.TOP_DOWN, q, grad=True).backend is topdown
    assert resolve_backend("auto", Pass.BOTTOM_UP, q, grad=False).backend is bottomup


def test_auto_skips_a_backend_that_cannot_run(monkeypatch):
    _replace_spec(monkeypatch, Backend.SPLIT, devices=frozenset({"cuda"}))
    q = torch.zeros(1, 4, 4, 2, 8)
    assert resolve_backend(Backend.AUTO, Pass.TOP_DOWN, q, grad=True).backend is Backend.SDPA


def test_forced_backend_without_a_pass_raises_naming_it(monkeypatch):
    """No silent fallback: a backend that declares no bottom-up pass is refused, with the reason."""
    _replace_spec(monkeypatch, Backend.SPLIT, bottomup=None)
    qs, ks, vs = _maps()
    with pytest.raises(ValueError, match=r"backend 'split' cannot run bottom_up attention.*no bottom_up pass"):
        bottomup_attention(qs[1], ks[0], vs[0], LAYOUT, 1, backend="split")
    assert resolve_backend(None, Pass.BOTTOM_UP, qs[1], grad=False).backend is Backend.SDPA


def test_forward_only_backend_refuses_backward_but_runs_forward(monkeypatch):
    """The declaration a forward-only backend (e.g. flex_attention on CPU) makes: refused when grads are needed."""
    _replace_spec(monkeypatch, Backend.SPLIT, autograd_devices=frozenset())
    qs, ks, vs = _maps(requires_grad=True)
    with pytest.raises(ValueError, match=r"'split'.*no backward on device 'cpu'"):
        topdown_attention(qs[0], ks, vs, LAYOUT, 0, backend="split")
    with torch.no_grad():
        out = topdown_attention(qs[0], ks, vs, LAYOUT, 0, backend="split")
    expected = topdown_attention(qs[0], ks, vs, LAYOUT, 0, backend="reference")
    torch.testing.assert_close(out, expected.detach())
    # auto does not pick it when a backward is needed
    assert resolve_backend(None, Pass.TOP_DOWN, qs[0], grad=True).backend is Backend.SDPA


def test_unsupported_dtype_is_refused_by_forced_and_auto():
    q = torch.zeros(1, 8, 7, 2, 4, dtype=torch.int32)
    layout = MultiScaleLayout.from_grid((8, 7), 4, 2, max_scales=1)
    with pytest.raises(ValueError, match=r"backend 'sdpa'.*dtype torch.int32 not supported"):
        topdown_attention(q, [q], [q], layout, 0, backend="sdpa")
    with pytest.raises(ValueError, match=r"no attention backend can run top_down.*split: .*sdpa: .*reference: "):
        topdown_attention(q, [q], [q], layout, 0)


def test_head_dim_declaration_is_checked():
    spec = dataclasses.replace(BACKENDS[0], head_dims=range(16, 257, 16))
    assert spec.not_supported_reasons(Pass.TOP_DOWN, torch.zeros(1, 2, 2, 1, 16), False) == []
    (reason,) = spec.not_supported_reasons(Pass.TOP_DOWN, torch.zeros(1, 2, 2, 1, 24), False)
    assert "head dim 24 not supported" in reason


def test_strings_are_parsed_once_with_a_clear_error():
    assert Backend.parse(None) is Backend.AUTO
    assert Backend.parse("split") is Backend("split") is Backend.SPLIT
    for bad in ("flash9", "SDPA", 3):
        with pytest.raises(ValueError, match=r"unknown attention backend .*valid: \['auto', 'sdpa', 'split'"):
            Backend.parse(bad)
    with pytest.raises(ValueError, match="unknown attention backend 'flash9'"):
        MSABlock(8, 2, 1, backend="flash9")


def test_msa_block_runs_the_forced_backend_in_both_passes(monkeypatch):
    """``MSABlock(backend="split")`` calls split's own implementations, never another backend's."""
    calls: list[str] = []
    spec = next(s for s in BACKENDS if s.backend is Backend.SPLIT)

    def spy(name, fn):
        def run(*args):
            calls.append(name)
            return fn(*args)

        return run

    _replace_spec(
        monkeypatch, Backend.SPLIT, topdown=spy("top_down", spec.topdown), bottomup=spy("bottom_up", spec.bottomup)
    )
    block = MSABlock(8, 2, 2, pos_embed_hidden=8, backend="split")
    xs = [torch.randn(1, *g.grid, 8) for g in LAYOUT.scales]
    block(xs, LAYOUT, 0)
    assert calls.count("top_down") == LAYOUT.num_scales and calls.count("bottom_up") == LAYOUT.num_scales - 1
