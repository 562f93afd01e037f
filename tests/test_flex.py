"""FlexAttention backend: forward against the float64 reference on CPU (awkward 2-D and 3-D shapes, every scale),
the refusal of a CPU backward, the bounded block-mask cache, a whole model, and forward + backward on CUDA under
``TORCH_DEVICE=cuda``."""

from __future__ import annotations

import pytest
import torch
from conftest import DEVICE
from tolerances import tol

import atlas_vision
from atlas_vision.ops import MultiScaleLayout, bottomup_attention, flex, topdown_attention

# (batch, grid, window, stride, heads, head_dim): non-square, not divisible, batch 1 and 3, odd head dims, 3-D
SHAPES = [
    (1, (40, 24), 8, 4, 2, 8),
    (3, (37, 53), 8, 2, 1, 24),
    (1, (9, 30), (4, 6), 2, 3, 8),
    (3, (5, 7), 4, 2, 2, 8),
    (1, (19, 26), 4, 2, 2, 16),  # 4 scales
    (3, (5, 9, 7), (2, 4, 4), 2, 2, 8),  # anisotropic volume
]


def _id(case):
    b, grid, window, stride, n, d = case
    return f"B{b}-{'x'.join(map(str, grid))}-k{window}-s{stride}-h{n}-d{d}"


def _maps(layout, b, n, d, dtype):
    return [[torch.randn(b, *g.grid, n, d, dtype=dtype) for g in layout.scales] for _ in range(3)]


# float64 on every shape; float32 (the masks are the same, only the arithmetic differs) on the two cheapest shapes
# that still cover batch 3 and 4 scales, to keep the default suite within its time (the others cost ~3 s each)
CPU_CASES = [(case, torch.float64) for case in SHAPES] + [(SHAPES[3], torch.float32), (SHAPES[4], torch.float32)]


@pytest.mark.parametrize(("case", "dtype"), CPU_CASES, ids=[f"{_id(c)}-{d}" for c, d in CPU_CASES])
def test_flex_forward_matches_reference_on_cpu(case, dtype):
    """Every top-down scale with its own window only and with all its ancestors, and every bottom-up scale."""
    b, grid, window, stride, n, d = case
    layout = MultiScaleLayout.from_grid(grid, window, stride, min_scales=2)
    qs, ks, vs = _maps(layout, b, n, d, dtype)
    with torch.no_grad():
        for scale in range(layout.num_scales):
            for num_keys in {1, layout.num_scales - scale}:
                keys, values = ks[scale : scale + num_keys], vs[scale : scale + num_keys]
                out = topdown_attention(qs[scale], keys, values, layout, scale, backend="flex")
                ref = topdown_attention(qs[scale], keys, values, layout, scale, backend="reference")
                torch.testing.assert_close(out, ref, **tol("flex", dtype, "fwd"))
        for scale in range(1, layout.num_scales):
            out = bottomup_attention(qs[scale], ks[scale - 1], vs[scale - 1], layout, scale, backend="flex")
            ref = bottomup_attention(qs[scale], ks[scale - 1], vs[scale - 1], layout, scale, backend="reference")
            torch.testing.assert_close(out, ref, **tol("flex", dtype, "fwd"))


def test_flex_backward_on_cpu_is_refused_with_the_reason():
    layout = MultiScaleLayout.from_grid((10, 7), 4, 2)
    q = torch.randn(1, 10, 7, 2, 8, requires_grad=True)
    with pytest.raises(ValueError, match=r"attention backend 'flex'.*no backward on device 'cpu'.*cuda"):
        topdown_attention(q, [q], [q], layout, 0, backend="flex")
    coarse = torch.randn(1, *layout[1].grid, 2, 8, requires_grad=True)
    with pytest.raises(ValueError, match=r"no backward on device 'cpu'"):
        bottomup_attention(coarse, q, q, layout, 1, backend="flex")


def test_flex_declares_the_cuda_head_dim_minimum():
    """FlexAttention's Triton kernels need head dim >= 16: a smaller one on CUDA is refused by the declaration (a
    clear error) instead of failing inside inductor; on CPU (eager) any head dim runs."""
    from types import SimpleNamespace

    from atlas_vision.ops import BACKENDS, Backend, Pass

    spec = next(s for s in BACKENDS if s.backend is Backend.FLEX)

    def reasons(device, d):  # stands in for a [B, h, w, n, d] query; only device, dtype and d are read
        q = SimpleNamespace(device=torch.device(device), dtype=torch.bfloat16, shape=(1, 4, 4, 2, d))
        return spec.not_supported_reasons(Pass.TOP_DOWN, q, needs_grad=False)

    if flex.flex_unavailable() is None:
        assert reasons("cuda", 16) == [] and reasons("cpu", 8) == []
    assert any("head dim 8 too small on 'cuda' (needs >= 16)" in r for r in reasons("cuda", 8))


def test_auto_does_not_pick_flex_on_cpu():
    from atlas_vision.ops import Backend, Pass, resolve_backend

    q = torch.zeros(1, 4, 4, 2, 8)
    for pass_ in Pass:
        assert resolve_backend(None, pass_, q, grad=False).backend is not Backend.FLEX


def test_block_masks_are_cached_per_layout_and_bounded(monkeypatch):
    monkeypatch.setattr(flex, "BLOCK_MASK_CACHE_SIZE", 3)
    flex.clear_block_mask_cache()
    layouts = [MultiScaleLayout.from_grid((8 + i, 9), 4, 2) for i in range(5)]
    with torch.no_grad():
        for layout in layouts:
            q = torch.randn(1, *layout[0].grid, 1, 8)
            topdown_attention(q, [q], [q], layout, 0, backend="flex")
            assert flex.block_mask_cache_len() <= 3
        assert flex.block_mask_cache_len() == 3
        # the newest layout is a hit: the same mask object is used again, nothing is built
        key = ("top_down", layouts[-1], 0, 1, torch.device("cpu"))
        cached = flex._block_masks[key]
        q = torch.randn(2, *layouts[-1][0].grid, 1, 8)
        topdown_attention(q, [q], [q], layouts[-1], 0, backend="flex")
        assert flex._block_masks[key] is cached and flex.block_mask_cache_len() == 3
    flex.clear_block_mask_cache()
    assert flex.block_mask_cache_len() == 0


def test_flex_model_inference_equals_sdpa():
    """A whole Atlas (3 stages, padded windows) with ``backend="flex"`` under inference mode equals the SDPA model."""
    torch.manual_seed(0)
    ref = atlas_vision.create_model("test_atlas_3stage", num_classes=5).eval()
    model = atlas_vision.create_model("test_atlas_3stage", num_classes=5, backend="flex").eval()
    model.load_state_dict(ref.state_dict())
    x = torch.randn(3, 3, 72, 52)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), ref(x), **tol("model", torch.float32, "fwd"))


@pytest.mark.skipif(DEVICE.type != "cuda", reason="FlexAttention's backward needs CUDA (TORCH_DEVICE=cuda)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", [SHAPES[1], SHAPES[4], (3, (5, 9, 7), (2, 4, 4), 2, 1, 16)], ids=_id)
def test_flex_forward_and_backward_on_cuda_match_float64_reference(case, dtype):
    b, grid, window, stride, n, d = case
    layout = MultiScaleLayout.from_grid(grid, window, stride, min_scales=2)
    qs, ks, vs = _maps(layout, b, n, d, torch.float64)
    grad = torch.randn(b, *layout[0].grid, n, d, dtype=torch.float64)
    tensors = [qs[0], *ks, *vs]

    def run(backend, device, run_dtype):
        leaves = [t.to(device=device, dtype=run_dtype).requires_grad_() for t in tensors]
        q, keys, values = leaves[0], leaves[1 : 1 + layout.num_scales], leaves[1 + layout.num_scales :]
        out = topdown_attention(q, keys, values, layout, 0, backend=backend)
        grads = torch.autograd.grad(out, leaves, grad.to(device=device, dtype=run_dtype))
        return [t.double().cpu() for t in (out, *grads)]

    expected = run("reference", torch.device("cpu"), torch.float64)
    actual = run("flex", DEVICE, dtype)
    torch.testing.assert_close(actual[0], expected[0], **tol("flex", dtype, "fwd"))
    for a, e in zip(actual[1:], expected[1:]):
        torch.testing.assert_close(a, e, **tol("flex", dtype, "bwd"))

    q_c = qs[1].to(device=DEVICE, dtype=dtype).requires_grad_()
    k_f = ks[0].to(device=DEVICE, dtype=dtype).requires_grad_()
    v_f = vs[0].to(device=DEVICE, dtype=dtype).requires_grad_()
    out = bottomup_attention(q_c, k_f, v_f, layout, 1, backend="flex")
    ref = bottomup_attention(qs[1], ks[0], vs[0], layout, 1, backend="reference")
    torch.testing.assert_close(out.double().cpu(), ref, **tol("flex", dtype, "fwd"))
    out.float().sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (q_c, k_f, v_f))


def test_compiled_flex_stays_compiled_over_many_image_sizes(monkeypatch):
    """A model run at many image sizes and batches stays within the compiled graphs this backend allows.

    Compiled with dynamo's ``aot_eager`` backend on CPU (same guards and recompiles as inductor on CUDA, no codegen).
    With dynamo's default limit of 8 graphs this sweep exhausts ``flex_attention``'s cache at the third call
    (batch 3 at 192 px: 0/1 specialisations of batch and block counts) and dynamo would fall back to the eager
    implementation that materialises every score; ``fail_on_recompile_limit_hit`` turns that into an error here.
    """
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    monkeypatch.setitem(flex.COMPILE_BACKEND, "cpu", "aot_eager")
    monkeypatch.setattr(torch._dynamo.config, "fail_on_recompile_limit_hit", True)
    flex.clear_block_mask_cache()
    torch.manual_seed(0)
    ref = atlas_vision.create_model("test_atlas_3stage", num_classes=5).eval()
    model = atlas_vision.create_model("test_atlas_3stage", num_classes=5, backend="flex").eval()
    model.load_state_dict(ref.state_dict())
    sweep = [(1, 64, 64), (1, 80, 48), (3, 96, 72), (1, 128, 100), (2, 72, 52), (3, 61, 95), (1, 40, 40)]
    counters.clear()
    with torch.no_grad():
        for b, h, w in sweep:
            x = torch.randn(b, 3, h, w)
            torch.testing.assert_close(model(x), ref(x), **tol("model", torch.float32, "fwd"))
        graphs = counters["stats"]["unique_graphs"]
        for b, h, w in sweep:  # the same sizes again: every graph and block mask is reused
            model(torch.randn(b, 3, h, w))
    assert counters["stats"]["unique_graphs"] == graphs, "a repeated size compiled a new graph"
    assert graphs <= flex.RECOMPILE_LIMIT, graphs
    flex.clear_block_mask_cache()
    torch._dynamo.reset()


def test_block_masks_built_under_inference_mode_hold_normal_tensors():
    """An evaluation pass under ``torch.inference_mode()`` that builds a mask must not leave inference tensors in the
    cache: FlexAttention saves the mask's tensors for backward in a later training step at the same size."""
    flex.clear_block_mask_cache()
    layout = MultiScaleLayout.from_grid((10, 7), 4, 2)
    q = torch.randn(1, *layout[0].grid, 2, 8)
    coarse = torch.randn(1, *layout[1].grid, 2, 8)
    with torch.inference_mode():
        topdown_attention(q, [q, coarse], [q, coarse], layout, 0, backend="flex")
        bottomup_attention(coarse, q, q, layout, 1, backend="flex")
    assert flex.block_mask_cache_len() == 2
    for mask in flex._block_masks.values():
        tensors = [t for t in mask.as_tuple() if isinstance(t, torch.Tensor)]
        tensors += [c.cell_contents for c in mask.mask_mod.__closure__ if isinstance(c.cell_contents, torch.Tensor)]
        assert len(tensors) > 4 and not any(t.is_inference() for t in tensors)
    flex.clear_block_mask_cache()
