"""MSA ops on 3-D token grids: fast backends vs the dense reference (forward and backward), routing, padding."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from tolerances import tol

import atlas_vision.ops.windows as windows_module
from atlas_vision.ops import MultiScaleLayout, bottomup_attention, topdown_attention
from atlas_vision.ops.split import _plan as _split_plan
from atlas_vision.ops.split import split_topdown_attention

# (batch, grid, window, stride, heads, head_dim, min_scales, max_scales): non-cubic, not divisible, anisotropic
# windows and strides, 1-4 scales, batch 1 and 3, odd head dims
SHAPES = [
    (1, (6, 10, 7), 4, 2, 2, 8, 1, None),  # 3 scales
    (3, (5, 9, 12), (2, 4, 4), 2, 1, 12, 1, None),  # anisotropic window, 3 scales
    (1, (9, 17, 11), 4, 2, 2, 4, 1, None),  # 4 scales
    (3, (8, 12, 10), (4, 8, 4), (2, 4, 2), 2, 6, 1, None),  # anisotropic stride
    (3, (4, 4, 4), 4, 2, 3, 8, 2, None),  # one window + an extra coarse scale
    (1, (7, 5, 9), 4, 2, 2, 8, 1, 1),  # 1 scale: plain window attention with padding
]
CASES = [(c, torch.float32) for c in SHAPES] + [(c, torch.float64) for c in SHAPES if c[1] != (9, 17, 11)]


def _id(value):
    if isinstance(value, tuple) and len(value) == 8:
        b, grid, window, stride, n, d, lo, hi = value
        return f"B{b}-{'x'.join(map(str, grid))}-k{window}-s{stride}-h{n}-d{d}-L{lo}:{hi}"
    return str(value).replace("torch.", "")


def _layout(case):
    _, grid, window, stride, _, _, lo, hi = case
    return MultiScaleLayout.from_grid(grid, window, stride, min_scales=lo, max_scales=hi)


def _maps(layout, b, n, d, dtype, requires_grad=True):
    return [
        [torch.randn(b, *g.grid, n, d, dtype=dtype, requires_grad=requires_grad) for g in layout.scales]
        for _ in range(3)
    ]


def _compare(fast_fn, ref_fn, inputs, dtype, backend):
    out_fast, out_ref = fast_fn(*inputs), ref_fn(*inputs)
    assert out_fast.shape == out_ref.shape == inputs[0].shape
    torch.testing.assert_close(out_fast, out_ref, **tol(backend, dtype, "fwd"))
    grad = torch.randn_like(out_ref) * 0.1
    g_fast = torch.autograd.grad(out_fast, inputs, grad)
    g_ref = torch.autograd.grad(out_ref, inputs, grad)
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b, **tol(backend, dtype, "bwd"))


def test_shapes_cover_one_to_four_scales():
    assert {_layout(c).num_scales for c in SHAPES} == {1, 2, 3, 4}


@pytest.mark.parametrize("backend", ["sdpa", "split", "split-fallback"])
@pytest.mark.parametrize("case,dtype", CASES, ids=_id)
def test_3d_topdown_fast_matches_reference(case, dtype, backend):
    b, _, _, _, n, d, _, _ = case
    layout = _layout(case)
    qs, ks, vs = _maps(layout, b, n, d, dtype)
    for scale in range(layout.num_scales):
        for num_keys in sorted({1, layout.num_scales - scale}):

            def run(q, *kv, backend, scale=scale, num_keys=num_keys):
                keys, values = kv[:num_keys], kv[num_keys:]
                if backend == "split-fallback":
                    return split_topdown_attention(q, keys, values, layout, scale, use_kernel=False)
                return topdown_attention(q, keys, values, layout, scale, backend=backend)

            inputs = [qs[scale], *ks[scale : scale + num_keys], *vs[scale : scale + num_keys]]
            _compare(
                lambda *t: run(*t, backend=backend),
                lambda *t: run(*t, backend="reference"),
                inputs,
                dtype,
                backend.split("-")[0],
            )


@pytest.mark.parametrize("case,dtype", [c for c in CASES if _layout(c[0]).num_scales > 1], ids=_id)
@pytest.mark.parametrize("backend", ["sdpa", "split"])
def test_3d_bottomup_fast_matches_reference(case, dtype, backend):
    b, _, _, _, n, d, _, _ = case
    layout = _layout(case)
    qs, ks, vs = _maps(layout, b, n, d, dtype)
    for scale in range(1, layout.num_scales):
        _compare(
            lambda q, k, v, scale=scale: bottomup_attention(q, k, v, layout, scale, backend=backend),
            lambda q, k, v, scale=scale: bottomup_attention(q, k, v, layout, scale, backend="reference"),
            [qs[scale], ks[scale - 1], vs[scale - 1]],
            dtype,
            backend,
        )


@pytest.mark.parametrize("backend", ["sdpa", "split"])
def test_3d_gradcheck_fast_path_float64(backend):
    layout = MultiScaleLayout.from_grid((3, 5, 4), 2, 2)  # 3 scales, padded windows on every axis
    qs, ks, vs = _maps(layout, 1, 1, 3, torch.float64)
    n = layout.num_scales
    assert torch.autograd.gradcheck(
        lambda q, *kv: topdown_attention(q, kv[:n], kv[n:], layout, 0, backend=backend),
        (qs[0], *ks, *vs),
        fast_mode=True,
    )
    assert torch.autograd.gradcheck(
        lambda q, k, v: bottomup_attention(q, k, v, layout, 1, backend=backend), (qs[1], ks[0], vs[0]), fast_mode=True
    )


@pytest.mark.parametrize("grid", [(3, 7, 5), (4, 4, 4), (1, 1, 9)])
def test_3d_one_scale_whole_grid_window_is_global_attention(grid):
    layout = MultiScaleLayout.from_grid(grid, window=10, stride=2)
    assert layout.num_scales == 1 and layout[0].is_single_window
    q, k, v = (torch.randn(2, *grid, 3, 8) for _ in range(3))
    for backend in ("sdpa", "split"):
        out = topdown_attention(q, [k], [v], layout, 0, backend=backend)
        flat = [t.flatten(1, 3).transpose(1, 2) for t in (q, k, v)]  # [B, n, N, d]
        expected = F.scaled_dot_product_attention(*flat).transpose(1, 2).reshape_as(q)
        torch.testing.assert_close(out, expected, **tol("sdpa", torch.float32, "fwd"))


def _changed_windows(out_a, out_b, window):
    """Set of (z, y, x) windows of a [B, d, h, w, n, e] map whose outputs differ."""
    diff = (out_a - out_b).abs().amax(dim=(0, 4, 5)) > 1e-9  # [d, h, w]
    return {tuple(int(c) // k for c, k in zip(point, window)) for point in torch.nonzero(diff)}


@pytest.mark.parametrize("backend", ["sdpa", "split", "reference"])
def test_3d_topdown_routes_each_window_to_its_spatial_ancestor(backend):
    # scale grids 12x8x16 (3x2x4 windows of 4^3), 6x4x8 (2x1x2 windows), 3x2x4 (one window)
    layout = MultiScaleLayout.from_grid((12, 8, 16), 4, 2)
    assert [g.num_windows for g in layout.scales] == [(3, 2, 4), (2, 1, 2), (1, 1, 1)]
    qs, ks, vs = _maps(layout, 1, 2, 4, torch.float64, requires_grad=False)
    target = (1, 0, 1)  # window of scale 1: z 4..5, y 0..3, x 4..7
    box = (slice(None), slice(4, 8), slice(0, 4), slice(4, 8))
    ks2 = [k.clone() for k in ks]
    ks2[1][box] += torch.randn_like(ks2[1][box])
    out_a = topdown_attention(qs[0], ks, vs, layout, 0, backend=backend)
    out_b = topdown_attention(qs[0], ks2, vs, layout, 0, backend=backend)
    changed = _changed_windows(out_a, out_b, (4, 4, 4))
    # fine window (i, j, k) covers fine z 4i..4i+3 -> pooled z 2i..2i+1 -> scale-1 window 2i // 4, etc.
    expected = {w for w in itertools.product(range(3), range(2), range(4)) if tuple(2 * c // 4 for c in w) == target}
    assert changed == expected == {(2, 0, 2), (2, 0, 3), (2, 1, 2), (2, 1, 3)}
    # raster-order pairing of the reference code (fine raster index // 8) would pick other windows (spec 8.1)
    raster = {_unravel(i, (3, 2, 4)) for i in range(24) if i // 8 == target[0] * 2 + target[2]}
    assert raster != expected


@pytest.mark.parametrize("backend", ["sdpa", "split", "reference"])
def test_3d_bottomup_reads_only_the_source_window(backend):
    layout = MultiScaleLayout.from_grid((8, 12, 10), 4, 2)  # 8x12x10 (2x3x3 windows) -> 4x6x5 (2x2x2) -> 2x3x3
    qs, ks, vs = _maps(layout, 2, 2, 4, torch.float64, requires_grad=False)
    ks2 = [k.clone() for k in ks]
    box = (slice(None), slice(4, 8), slice(4, 8), slice(8, 10))  # fine window (1, 1, 2), partly padding
    ks2[0][box] += torch.randn_like(ks2[0][box])
    out_a = bottomup_attention(qs[1], ks[0], vs[0], layout, 1, backend=backend)
    out_b = bottomup_attention(qs[1], ks2[0], vs[0], layout, 1, backend=backend)
    changed = _changed_windows(out_a, out_b, (1, 1, 1))
    assert changed == set(itertools.product(range(2, 4), range(2, 4), range(4, 5)))  # coarse tokens pooled from it


def _unravel(flat, shape):
    index = []
    for n in reversed(shape):
        flat, i = divmod(flat, n)
        index.append(i)
    return tuple(reversed(index))


@pytest.mark.parametrize("backend", ["sdpa", "split"])
def test_3d_results_do_not_depend_on_padding_content(monkeypatch, backend):
    layout = MultiScaleLayout.from_grid((7, 10, 9), 4, 2)
    assert all(g.needs_padding for g in layout.scales[:-1])
    qs, ks, vs = _maps(layout, 2, 2, 8, torch.float32, requires_grad=False)
    clean_td = topdown_attention(qs[0], ks, vs, layout, 0, backend=backend)
    clean_bu = bottomup_attention(qs[1], ks[0], vs[0], layout, 1)
    real_pad = windows_module.pad_grid
    calls = []

    def pad_with_garbage(x, padded):
        out = real_pad(x, padded)
        if tuple(out.shape[1:-2]) != tuple(x.shape[1:-2]):
            calls.append(tuple(padded))
            garbage = torch.full_like(out, 1e4)
            garbage[(slice(None), *(slice(0, g) for g in x.shape[1:-2]))] = x
            out = garbage
        return out

    monkeypatch.setattr(windows_module, "pad_grid", pad_with_garbage)
    torch.testing.assert_close(topdown_attention(qs[0], ks, vs, layout, 0, backend=backend), clean_td)
    torch.testing.assert_close(bottomup_attention(qs[1], ks[0], vs[0], layout, 1), clean_bu)
    assert calls  # the garbage padding was actually used


@pytest.mark.parametrize("grid,window,stride", [((9, 17, 17), 4, 2), ((12, 20, 10), (4, 8, 4), (2, 4, 2))])
def test_3d_nested_window_order_round_trip_and_grouping(grid, window, stride):
    """Split backend: partition/merge are inverse; each nested group holds exactly the fine windows of one ancestor."""
    layout = MultiScaleLayout.from_grid(grid, window, stride, min_scales=3)
    query, nestings, levels = _split_plan(layout, 0, layout.num_scales)
    assert levels >= 1
    x = torch.randn(2, *grid, 3, 5)
    torch.testing.assert_close(query.merge(query.partition(x)), x, rtol=0, atol=0)
    geo = layout[0]
    axes = [torch.arange(g) // k for g, k in zip(grid, geo.window)]
    zz, yy, xx = torch.meshgrid(*axes, indexing="ij")
    tag = ((zz * geo.num_windows[1] + yy) * geo.num_windows[2] + xx).double()[None, ..., None, None]
    nested_tag = query.partition(tag + 1)[0, 0, :, :, 0]  # [W, T], 0 = padding
    for m in range(1, levels + 1):
        groups = nestings[m].partition(torch.zeros(1, *layout[m].grid, 1, 1)).shape[2]
        for group in nested_tag.view(groups, -1):
            fine = {int(t) - 1 for t in group.unique() if t > 0}
            assert len({layout.ancestor_window(0, w, m) for w in fine}) <= 1


def test_3d_op_input_errors_name_the_expected_layout():
    layout = MultiScaleLayout.from_grid((4, 8, 8), 4, 2)
    q = torch.randn(1, 4, 8, 8, 2, 4)
    with pytest.raises(ValueError, match=r"\[B, d, h, w, n_heads, d_head\].*3-D layout.*\(1, 8, 8, 2, 4\)"):
        topdown_attention(q[:, 0], [q], [q], layout, 0)
    with pytest.raises(ValueError, match=r"grid \(4, 8, 7\) but the layout expects \(4, 8, 8\)"):
        topdown_attention(q, [q[:, :, :, :7]], [q[:, :, :, :7]], layout, 0)
    layout2d = MultiScaleLayout.from_grid((8, 8), 4, 2)
    with pytest.raises(ValueError, match=r"\[B, h, w, n_heads, d_head\].*2-D layout"):
        topdown_attention(q, [q], [q], layout2d, 0)
