"""MSA ops: fast path vs reference (forward and backward), degenerate cases, routing, padding independence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import DEVICE
from tolerances import tol

import atlas_vision.ops.windows as windows_module
from atlas_vision.ops import MultiScaleLayout, PoolOp, bottomup_attention, summarize, topdown_attention
from atlas_vision.ops.split import _plan as _split_plan
from atlas_vision.ops.split import split_bottomup_attention, split_topdown_attention

# (batch, grid, window, stride, heads, head_dim): non-square, not divisible, batch 1 and 3, odd head dims
SHAPES = [
    (1, (40, 24), 8, 4, 2, 8),
    (3, (37, 53), 8, 2, 1, 24),
    (1, (64, 64), 16, 4, 2, 16),
    (1, (9, 30), (4, 6), 2, 3, 8),
    (3, (5, 7), 4, 2, 2, 8),
]


# every shape in fp32; the small ones also in fp64 (the dense reference is O(N^2) in memory and time)
CASES = [(c, torch.float32) for c in SHAPES] + [(c, torch.float64) for c in SHAPES if c[1][0] * c[1][1] < 2000]


def _case_id(value):
    return _id(value) if isinstance(value, tuple) and len(value) == 6 else str(value).replace("torch.", "")


def _id(case):
    b, grid, window, stride, n, d = case
    return f"B{b}-{grid[0]}x{grid[1]}-k{window}-s{stride}-h{n}-d{d}"


def _maps(layout, b, n, d, dtype, requires_grad=True):
    def one():
        return [torch.randn(b, *g.grid, n, d, dtype=dtype, requires_grad=requires_grad) for g in layout.scales]

    return one(), one(), one()


def _compare(fast_fn, ref_fn, inputs, dtype, backend="sdpa"):
    out_fast = fast_fn(*inputs)
    out_ref = ref_fn(*inputs)
    torch.testing.assert_close(out_fast, out_ref, **tol(backend, dtype, "fwd"))
    grad = torch.randn_like(out_ref) * 0.1
    leaves = [t for t in inputs if isinstance(t, torch.Tensor)]
    g_fast = torch.autograd.grad(out_fast, leaves, grad, allow_unused=True)
    g_ref = torch.autograd.grad(out_ref, leaves, grad, allow_unused=True)
    for a, b in zip(g_fast, g_ref):
        if b is None:
            assert a is None or float(a.abs().max()) == 0.0
        else:
            torch.testing.assert_close(a, b, **tol(backend, dtype, "bwd"))


@pytest.mark.parametrize("backend", ["sdpa", "split"])
@pytest.mark.parametrize("case,dtype", CASES, ids=_case_id)
def test_topdown_fast_matches_reference(case, dtype, backend):
    b, grid, window, stride, n, d = case
    layout = MultiScaleLayout.from_grid(grid, window, stride, min_scales=2)
    qs, ks, vs = _maps(layout, b, n, d, dtype)
    for scale in range(layout.num_scales):
        for num_keys in {1, layout.num_scales - scale}:

            def run(q, *kv, backend, num_keys=num_keys, scale=scale):
                keys, values = kv[:num_keys], kv[num_keys:]
                return topdown_attention(q, keys, values, layout, scale, backend=backend)

            inputs = [qs[scale], *ks[scale : scale + num_keys], *vs[scale : scale + num_keys]]
            _compare(
                lambda *t: run(*t, backend=backend), lambda *t: run(*t, backend="reference"), inputs, dtype, backend
            )


# grids whose window grid needs the split backend's nested padding (e.g. 9 x 5 windows, stride 2, 2-3 ancestors)
SPLIT_FALLBACK_CASES = [(3, (70, 33), 4, 2, 2, 8), (1, (40, 24), 8, 4, 2, 8), (1, (9, 30), (4, 6), 2, 3, 8)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("case", SPLIT_FALLBACK_CASES, ids=_id)
def test_split_pytorch_fallback_matches_reference(case, dtype):
    """The split backend's pure-PyTorch path (used off-CPU) against the reference, forward and backward."""
    b, grid, window, stride, n, d = case
    layout = MultiScaleLayout.from_grid(grid, window, stride, min_scales=2)
    qs, ks, vs = _maps(layout, b, n, d, dtype)
    for scale in range(layout.num_scales):
        num_keys = layout.num_scales - scale

        def run(q, *kv, kernel, num_keys=num_keys, scale=scale):
            keys, values = kv[:num_keys], kv[num_keys:]
            if kernel is None:
                return topdown_attention(q, keys, values, layout, scale, backend="reference")
            return split_topdown_attention(q, keys, values, layout, scale, use_kernel=kernel)

        inputs = [qs[scale], *ks[scale:], *vs[scale:]]
        _compare(lambda *t: run(*t, kernel=False), lambda *t: run(*t, kernel=None), inputs, dtype, "split")


@pytest.mark.parametrize("grid,window,stride", [((70, 33), 4, 2), ((37, 53), 8, 2), ((9, 30), (4, 6), 2)])
def test_nested_window_order_round_trip_and_grouping(grid, window, stride):
    """partition/merge are inverse; every group of the nested order is exactly the fine windows of one ancestor."""
    layout = MultiScaleLayout.from_grid(grid, window, stride, min_scales=3)
    query, nestings, levels = _split_plan(layout, 0, layout.num_scales)
    x = torch.randn(2, *grid, 3, 5)
    torch.testing.assert_close(query.merge(query.partition(x)), x, rtol=0, atol=0)
    # tag every token with the raster index of its scale-0 window, in nested order
    kh, kw = layout[0].window
    rows = torch.arange(grid[0])[:, None] // kh
    cols = torch.arange(grid[1])[None, :] // kw
    tag = (rows * layout[0].num_windows[1] + cols).double()[None, :, :, None, None]
    nested_tag = query.partition(tag + 1)[0, 0, :, :, 0]  # [W, T], 0 = padding
    for m in range(1, levels + 1):
        groups = nestings[m].partition(torch.zeros(1, *layout[m].grid, 1, 1)).shape[2]
        for group in nested_tag.view(groups, -1):
            fine = {int(t) - 1 for t in group.unique() if t > 0}
            ancestors = {layout.ancestor_window(0, w, m) for w in fine}
            assert len(ancestors) <= 1, (m, fine, ancestors)


@pytest.mark.parametrize("backend", ["sdpa", "split"])
@pytest.mark.parametrize("case,dtype", CASES, ids=_case_id)
def test_bottomup_fast_matches_reference(case, dtype, backend):
    b, grid, window, stride, n, d = case
    layout = MultiScaleLayout.from_grid(grid, window, stride, min_scales=2)
    qs, ks, vs = _maps(layout, b, n, d, dtype)
    for scale in range(1, layout.num_scales):
        inputs = [qs[scale], ks[scale - 1], vs[scale - 1]]
        _compare(
            lambda q, k, v, scale=scale: bottomup_attention(q, k, v, layout, scale, backend=backend),
            lambda q, k, v, scale=scale: bottomup_attention(q, k, v, layout, scale, backend="reference"),
            inputs,
            dtype,
            backend,
        )


def _all_passes(qs, ks, vs, layout, backend):
    """Every top-down pass (each scale over itself and all coarser K/V) and every bottom-up pass, as one list."""
    outs = [topdown_attention(qs[m], ks[m:], vs[m:], layout, m, backend=backend) for m in range(layout.num_scales)]
    outs += [bottomup_attention(qs[m], ks[m - 1], vs[m - 1], layout, m, backend=backend) for m in range(1, len(qs))]
    return outs


@pytest.mark.parametrize("backend", ["sdpa", "split"])
@pytest.mark.parametrize("case", [SHAPES[0], SHAPES[4]], ids=_id)
def test_compiled_fast_paths_match_eager_forward_and_backward(case, backend):
    """``torch.compile`` (dynamo + AOTAutograd, ``aot_eager``: no code generation) of every pass gives eager's outputs
    and gradients. With torch 2.11 the split backend's fused-kernel ``autograd.Function`` returned gradients off by
    ~1 under compile (forward exact) until its output was copied there (``ops/split.py``)."""
    import torch._dynamo

    torch._dynamo.reset()
    b, grid, window, stride, n, d = case
    layout = MultiScaleLayout.from_grid(grid, window, stride, min_scales=2)
    qs, ks, vs = _maps(layout, b, n, d, torch.float32)
    leaves = [*qs, *ks, *vs]
    compiled = torch.compile(_all_passes, backend="aot_eager", fullgraph=True)
    eager_out = _all_passes(qs, ks, vs, layout, backend)
    compiled_out = compiled(qs, ks, vs, layout, backend)
    grads_out = [torch.randn_like(o) for o in eager_out]
    eager_grads = torch.autograd.grad(eager_out, leaves, grads_out, allow_unused=True)
    compiled_grads = torch.autograd.grad(compiled_out, leaves, grads_out, allow_unused=True)
    for a, e in zip(compiled_out, eager_out):
        torch.testing.assert_close(a, e, **tol(backend, torch.float32, "fwd"))
    for a, e in zip(compiled_grads, eager_grads):
        assert (a is None) == (e is None)
        if e is not None:
            torch.testing.assert_close(a, e, **tol(backend, torch.float32, "bwd"))
    torch._dynamo.reset()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("case", SPLIT_FALLBACK_CASES, ids=_id)
def test_split_bottomup_pytorch_fallback_matches_reference(case, dtype):
    """The split backend's bottom-up pass without the fused CPU kernel (the path used off-CPU)."""
    b, grid, window, stride, n, d = case
    layout = MultiScaleLayout.from_grid(grid, window, stride, min_scales=2)
    qs, ks, vs = _maps(layout, b, n, d, dtype)
    for scale in range(1, layout.num_scales):
        _compare(
            lambda q, k, v, scale=scale: split_bottomup_attention(q, k, v, layout, scale, use_kernel=False),
            lambda q, k, v, scale=scale: bottomup_attention(q, k, v, layout, scale, backend="reference"),
            [qs[scale], ks[scale - 1], vs[scale - 1]],
            dtype,
            "split",
        )


@pytest.mark.parametrize("backend", ["sdpa", "split"])
def test_gradcheck_fast_path_float64(backend):
    layout = MultiScaleLayout.from_grid((6, 5), 4, 2)  # 2 scales, padded windows
    qs, ks, vs = _maps(layout, 1, 2, 3, torch.float64)
    assert torch.autograd.gradcheck(
        lambda q, k0, k1, v0, v1: topdown_attention(q, [k0, k1], [v0, v1], layout, 0, backend=backend),
        (qs[0], ks[0], ks[1], vs[0], vs[1]),
        fast_mode=True,
    )
    assert torch.autograd.gradcheck(
        lambda q, k, v: bottomup_attention(q, k, v, layout, 1, backend=backend),
        (qs[1], ks[0], vs[0]),
        fast_mode=True,
    )


@pytest.mark.parametrize("grid", [(7, 5), (16, 16), (1, 9)])
def test_one_scale_whole_grid_window_is_global_attention(grid):
    layout = MultiScaleLayout.from_grid(grid, window=max(grid) + 1 + (max(grid) + 1) % 2, stride=2)
    assert layout.num_scales == 1 and layout[0].is_single_window
    q, k, v = (torch.randn(2, *grid, 3, 8) for _ in range(3))
    out = topdown_attention(q, [k], [v], layout, 0)
    flat = [t.flatten(1, 2).transpose(1, 2) for t in (q, k, v)]  # [B, n, N, d]
    expected = F.scaled_dot_product_attention(*flat).transpose(1, 2).reshape_as(q)
    torch.testing.assert_close(out, expected, **tol("sdpa", torch.float32, "fwd"))


def _changed_windows(out_a, out_b, window):
    """Set of (row, col) windows of a [B, h, w, n, d] map whose outputs differ."""
    diff = (out_a - out_b).abs().amax(dim=(0, 3, 4)) > 1e-9  # [h, w]
    rows, cols = torch.nonzero(diff, as_tuple=True)
    return {(int(r) // window[0], int(c) // window[1]) for r, c in zip(rows, cols)}


@pytest.mark.parametrize("backend", ["sdpa", "split", "reference"])
def test_topdown_routes_each_window_to_its_spatial_ancestor(backend):
    # scale grids 32x48 (8x12 windows of 4x4), 16x24 (4x6 windows), 8x12 (2x3), 4x6 (1x2), 2x3 (1 window)
    layout = MultiScaleLayout.from_grid((32, 48), 4, 2)
    assert [g.num_windows for g in layout.scales] == [(8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]
    qs, ks, vs = _maps(layout, 1, 2, 4, torch.float64, requires_grad=False)
    target = (1, 4)  # perturb window (1, 4) of scale 1 (rows 4..7, cols 16..19)
    ks2 = [k.clone() for k in ks]
    ks2[1][:, 4:8, 16:20] += torch.randn_like(ks2[1][:, 4:8, 16:20])
    out_a = topdown_attention(qs[0], ks, vs, layout, 0, backend=backend)
    out_b = topdown_attention(qs[0], ks2, vs, layout, 0, backend=backend)
    changed = _changed_windows(out_a, out_b, (4, 4))
    # fine window (i, j) covers fine rows 4i..4i+3 -> pooled rows 2i..2i+1 -> scale-1 window (2i // 4, 2j // 4)
    expected = {(i, j) for i in range(8) for j in range(12) if (2 * i // 4, 2 * j // 4) == target}
    assert changed == expected == {(2, 8), (2, 9), (3, 8), (3, 9)}
    # the reference code's raster-order pairing (fine raster index // 4) would pick other windows (spec 8.1)
    raster = {divmod(index, 12) for index in range(96) if index // 4 == target[0] * 6 + target[1]}
    assert raster != expected


@pytest.mark.parametrize("backend", ["sdpa", "split", "reference"])
def test_bottomup_reads_only_the_source_window(backend):
    layout = MultiScaleLayout.from_grid((20, 28), 8, 4)  # 20x28 (3x4 windows of 8x8) -> 5x7 (single window)
    qs, ks, vs = _maps(layout, 2, 2, 4, torch.float64, requires_grad=False)
    ks2 = [k.clone() for k in ks]
    ks2[0][:, 8:16, 16:24] += torch.randn_like(ks2[0][:, 8:16, 16:24])  # fine window (1, 2)
    out_a = bottomup_attention(qs[1], ks[0], vs[0], layout, 1, backend=backend)
    out_b = bottomup_attention(qs[1], ks2[0], vs[0], layout, 1, backend=backend)
    changed = _changed_windows(out_a, out_b, (1, 1))
    assert changed == {(r, c) for r in range(2, 4) for c in range(4, 6)}  # coarse tokens pooled from it


@pytest.mark.parametrize("backend", ["sdpa", "split"])
def test_results_do_not_depend_on_padding_content(monkeypatch, backend):
    layout = MultiScaleLayout.from_grid((37, 53), 8, 2)
    assert any(g.needs_padding for g in layout.scales)
    qs, ks, vs = _maps(layout, 2, 2, 8, torch.float32, requires_grad=False)
    clean_td = topdown_attention(qs[0], ks, vs, layout, 0, backend=backend)
    clean_bu = bottomup_attention(qs[2], ks[1], vs[1], layout, 2, backend=backend)
    real_pad = windows_module.pad_grid

    def pad_with_garbage(x, padded):
        out = real_pad(x, padded)
        if tuple(out.shape[1:3]) != tuple(x.shape[1:3]):
            garbage = torch.full_like(out, 1e4)
            garbage[:, : x.shape[1], : x.shape[2]] = x
            out = garbage
        return out

    monkeypatch.setattr(windows_module, "pad_grid", pad_with_garbage)
    torch.testing.assert_close(topdown_attention(qs[0], ks, vs, layout, 0, backend=backend), clean_td)
    torch.testing.assert_close(bottomup_attention(qs[2], ks[1], vs[1], layout, 2, backend=backend), clean_bu)


@pytest.mark.parametrize("op", list(PoolOp))
def test_summarize_ceil_mode_pools_only_real_tokens(op):
    x = torch.randn(2, 7, 10, 3)
    out = summarize(x, (4, 4), op)
    assert out.shape == (2, 2, 3, 3)
    for r in range(2):
        for c in range(3):
            block = x[:, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4]
            want = block.amax(dim=(1, 2)) if op is PoolOp.MAX else block.mean(dim=(1, 2))
            torch.testing.assert_close(out[:, r, c], want)


def test_op_input_errors_are_clear():
    layout = MultiScaleLayout.from_grid((8, 8), 4, 2)
    q = torch.randn(1, 8, 8, 2, 4)
    with pytest.raises(ValueError, match="grid"):
        topdown_attention(q, [torch.randn(1, 8, 7, 2, 4)], [torch.randn(1, 8, 7, 2, 4)], layout, 0)
    with pytest.raises(ValueError, match="scale must be"):
        topdown_attention(q, [q], [q], layout, 5)
    with pytest.raises(ValueError, match=r"\[B, h, w, n_heads, d_head\]"):
        topdown_attention(q[0], [q], [q], layout, 0)
    with pytest.raises(ValueError, match="backend"):
        topdown_attention(q, [q], [q], layout, 0, backend="flash9")
    with pytest.raises(ValueError, match="bottom-up scale"):
        bottomup_attention(q, q, q, layout, 0)


@pytest.mark.parametrize(
    "backend",
    [
        "sdpa",
        "split",
        pytest.param("flex", marks=pytest.mark.skipif(DEVICE.type != "cuda", reason="flex has no CPU backward")),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_fast_paths_on_test_device_match_float64_reference(backend, dtype):
    """On ``TORCH_DEVICE`` (CPU by default, ``TORCH_DEVICE=cuda`` on a GPU): forward and input gradients of the fast
    backends (``flex`` on CUDA only) in fp32 and bf16 against the fp64 reference on CPU, with the tolerance table's
    entries."""

    layout = MultiScaleLayout.from_grid((19, 26), 4, 2, min_scales=3)  # padded windows, 3+ scales
    b, n, d = 3, 2, 16
    maps = [[torch.randn(b, *g.grid, n, d, dtype=torch.float64) for g in layout.scales] for _ in range(3)]
    grad = torch.randn(b, *layout[0].grid, n, d, dtype=torch.float64)

    def run(tensors, backend_name, device, run_dtype):
        leaves = [t.to(device=device, dtype=run_dtype).requires_grad_() for t in tensors]
        q, keys, values = leaves[0], leaves[1 : 1 + layout.num_scales], leaves[1 + layout.num_scales :]
        out = topdown_attention(q, keys, values, layout, 0, backend=backend_name)
        grads = torch.autograd.grad(out, leaves, grad.to(device=device, dtype=run_dtype))
        return [t.double().cpu() for t in (out, *grads)]

    tensors = [maps[0][0], *maps[1], *maps[2]]
    expected = run(tensors, "reference", torch.device("cpu"), torch.float64)
    actual = run(tensors, backend, DEVICE, dtype)
    torch.testing.assert_close(actual[0], expected[0], **tol(backend, dtype, "fwd"))
    for a, e in zip(actual[1:], expected[1:]):
        torch.testing.assert_close(a, e, **tol(backend, dtype, "bwd"))
