"""MSABlock against the dense float64 transcription of Algorithm 1, and ScaleBlock / WindowPosEmbed on their own."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tolerances import tol

from atlas_vision.layers import MSABlock, ScaleBlock, WindowPosEmbed
from atlas_vision.layers.reference_block import PATHWAYS, ScaleWeights, reference_msa_block
from atlas_vision.ops import MultiScaleLayout, scale_pyramid

DIM, HEADS = 12, 3  # head dim 4


# (batch, grid, window, stride, first_scale, weight sets, min_scales): non-square, not divisible by the window,
# batch 1 and 3, 2-4 scales, a first scale > 0, fewer weight sets than scales (the coarsest share the last one), and
# a forced extra 1x1 scale.
CASES = [
    (3, (11, 6), 4, 2, 0, 3, 1),  # 11x6 -> 6x3 -> 3x2
    (1, (5, 7), 4, 2, 0, 2, 1),  # 5x7 -> 3x4: 2 scales
    (1, (19, 26), 4, 2, 0, 2, 1),  # 19x26 -> 10x13 -> 5x7 -> 3x4: 4 scales, the last two share weights
    (3, (18, 9), (4, 6), 2, 1, 2, 1),  # non-square window; stage 2 (scale 0 passes through)
    (1, (8, 12), 4, 4, 0, 3, 3),  # 8x12 -> 2x3 -> 1x1 (forced by min_scales)
]


def _case_id(case):
    b, grid, window, stride, first, sets, min_scales = case
    return f"B{b}-{'x'.join(map(str, grid))}-k{window}-s{stride}-first{first}-w{sets}-min{min_scales}"


def _block(num_sets: int, communication: str, backend: str, ndim: int = 2) -> MSABlock:
    block = MSABlock(
        DIM,
        HEADS,
        num_sets,
        mlp_ratio=2.0,
        pos_embed_hidden=8,
        communication=communication,
        backend=backend,
        ndim=ndim,
    )
    with torch.no_grad():  # non-trivial norms and biases, so that a swapped weight would show
        for p in block.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return block.double().eval()


def _check_against_reference(block, layout, first, batch, communication):
    """Forward, input gradients and parameter gradients of ``block`` against :func:`reference_msa_block` with copied
    weights (scale ``first + i`` uses weight set ``min(i, sets - 1)``: the coarsest scales share the last one)."""
    sets = len(block.scale_blocks)
    active = list(range(first, layout.num_scales))
    set_of = {scale: min(scale - first, sets - 1) for scale in active}
    with torch.no_grad():
        maps = scale_pyramid(torch.randn(batch, *layout[0].grid, DIM, dtype=torch.float64), layout)
    xs = [x.clone().requires_grad_() for x in maps]
    ref_xs = [x.clone().requires_grad_() for x in maps]
    weights = [ScaleWeights.copy_of(block.scale_blocks[set_of[scale]], requires_grad=True) for scale in active]

    out = block(xs, layout, first)
    expected = reference_msa_block(ref_xs, weights, layout.window, layout.stride, first, communication)
    for scale in range(layout.num_scales):
        torch.testing.assert_close(out[scale], expected[scale], **tol("reference", torch.float64, "fwd"))
    for scale in range(first):
        assert out[scale] is xs[scale]  # inactive scales pass through untouched

    cotangents = [torch.randn_like(e) for e in expected]
    params = dict(block.named_parameters())
    grads = torch.autograd.grad(out, [*xs, *params.values()], cotangents, allow_unused=True)
    leaves = [
        (f"scale_blocks.{set_of[scale]}.{name}", t)
        for scale, w in zip(active, weights)
        for name, t in w.tensors.items()
    ]
    ref_grads = torch.autograd.grad(expected, [*ref_xs, *(t for _, t in leaves)], cotangents, allow_unused=True)
    bwd = tol("reference", torch.float64, "bwd")
    for g, r in zip(grads[: len(xs)], ref_grads[: len(xs)]):
        torch.testing.assert_close(g, r, **bwd)
    expected_param_grads: dict[str, torch.Tensor] = {}  # a shared weight set accumulates over the scales using it
    for (name, _), g in zip(leaves, ref_grads[len(xs) :]):
        if g is not None:
            expected_param_grads[name] = expected_param_grads.get(name, 0) + g
    for name, g in zip(params, grads[len(xs) :]):
        if name in expected_param_grads:
            torch.testing.assert_close(g, expected_param_grads[name], **bwd, msg=name)
        else:  # the reference does not use it in this mode: neither may we
            assert g is None or float(g.abs().max()) == 0.0, name


@pytest.mark.parametrize("backend", ["sdpa", "split"])
@pytest.mark.parametrize("communication", ["full", "top_down", "bottom_up", "none"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_msa_block_matches_algorithm_1(case, communication, backend):
    batch, grid, window, stride, first, sets, min_scales = case
    layout = MultiScaleLayout.from_grid(grid, window, stride, min_scales=min_scales)
    assert layout.num_scales - first >= 1
    _check_against_reference(_block(sets, communication, backend), layout, first, batch, communication)


# volumes: (batch, grid, window, stride, first_scale, weight sets, min_scales): non-cubic, not divisible,
# anisotropic windows and strides, 2-3 scales, a first scale > 0
CASES_3D = [
    (3, (5, 9, 7), (2, 4, 4), 2, 0, 2, 1),  # 5x9x7 -> 3x5x4 -> 2x3x2
    (1, (6, 13, 5), (2, 6, 4), (2, 3, 2), 0, 3, 1),  # anisotropic window and stride
    (1, (7, 6, 9), 4, 2, 1, 2, 1),  # stage 2 (scale 0 passes through)
]


@pytest.mark.parametrize("backend", ["sdpa", "split"])
@pytest.mark.parametrize("communication", ["full", "top_down", "bottom_up", "none"])
@pytest.mark.parametrize("case", CASES_3D, ids=_case_id)
def test_3d_msa_block_matches_algorithm_1(case, communication, backend):
    """The same whole-block transcription, on (d, h, w) token grids: a 3-D MSABlock is Algorithm 1 per axis."""
    batch, grid, window, stride, first, sets, min_scales = case
    layout = MultiScaleLayout.from_grid(grid, window, stride, min_scales=min_scales)
    assert layout.ndim == 3 and layout.num_scales - first >= 1
    _check_against_reference(_block(sets, communication, backend, ndim=3), layout, first, batch, communication)


@pytest.mark.parametrize("backend", ["sdpa", "split"])
@pytest.mark.parametrize("batch,grid,window", [(1, (9, 7), 4), (3, (6, 10), (4, 6)), (1, (3, 2), 4)], ids=str)
def test_single_scale_block_matches_algorithm_1(batch, grid, window, backend):
    layout = MultiScaleLayout.from_grid(grid, window, 2, max_scales=1)
    _check_against_reference(_block(1, "single_scale", backend), layout, 0, batch, "single_scale")


def test_reference_modes_are_the_table_4_pathways():
    """The pathways switched by each mode (summary add, coarser keys in top-down, bottom-up), as Table 4 defines them."""
    assert PATHWAYS == {
        "full": (True, True, True),
        "top_down": (True, True, False),
        "bottom_up": (True, False, True),
        "none": (False, False, False),
        "single_scale": (False, False, False),
    }
    from atlas_vision.layers import Communication

    for mode in Communication:
        assert (mode.summary_add, mode.top_down, mode.bottom_up) == PATHWAYS[mode.value]


def test_reference_is_sensitive_to_each_pathway():
    """The reference is not vacuous: the modes give different functions on a 3-scale input."""
    layout = MultiScaleLayout.from_grid((11, 6), 4, 2)
    block = _block(3, "full", "sdpa")
    weights = [ScaleWeights.copy_of(block.block_for(s, 0)) for s in range(3)]
    xs = scale_pyramid(torch.randn(1, 11, 6, DIM, dtype=torch.float64), layout)
    outs = {
        m: reference_msa_block(xs, weights, layout.window, layout.stride, 0, m)
        for m in ["full", "top_down", "bottom_up", "none"]
    }
    finest = {m: o[0] for m, o in outs.items()}
    coarsest = {m: o[2] for m, o in outs.items()}
    assert not torch.allclose(finest["full"], finest["none"])  # coarse context reaches the finest scale
    assert torch.allclose(finest["full"], finest["top_down"])  # bottom-up never changes scale 0
    assert not torch.allclose(coarsest["full"], coarsest["top_down"])  # ... but changes coarser scales


# ---------------------------------------------------------------------------------------------------------------------
# ScaleBlock and WindowPosEmbed on their own


def test_window_pos_embed_is_an_mlp_of_window_local_coordinates():
    torch.manual_seed(0)
    emb = WindowPosEmbed(DIM, hidden=8).double()
    layout = MultiScaleLayout.from_grid((10, 13), (4, 6), 2)  # 10x13: 3x3 windows of 4x6 (padded) -> 5x7 -> 3x4
    like = torch.zeros(1, dtype=torch.float32)
    out = emb(layout[0], like)
    assert out.shape == (10, 13, DIM) and out.dtype == torch.float32  # cast to the map's dtype, cropped to the grid

    def mlp(row, col):
        return emb.fc2(torch.relu(emb.fc1(torch.tensor([row, col], dtype=torch.float64))))

    for y, x in [(0, 0), (3, 5), (4, 6), (9, 12), (2, 7)]:
        row, col = y % 4, x % 6  # in-window position
        expected = mlp((row - 2) / 2, (col - 3) / 3)
        torch.testing.assert_close(out[y, x].double(), expected, **tol("mixer", torch.float32, "fwd"))
    torch.testing.assert_close(out[1, 2], out[5, 8])  # same pattern in every window
    coarse = emb(layout[2], like.double())  # single window: image-global coordinates of the 3x4 grid
    assert layout[2].is_single_window and coarse.shape == (3, 4, DIM)
    torch.testing.assert_close(coarse[2, 3], mlp((2 - 1) / 1, (3 - 2) / 2), **tol("reference", torch.float64, "fwd"))
    assert not torch.allclose(coarse[0, 0], coarse[2, 3])


def test_window_pos_embed_of_side_one_is_zero_coordinate():
    emb = WindowPosEmbed(DIM, hidden=8).double()
    geo = MultiScaleLayout.from_grid((1, 1), 4, 2)[0]
    out = emb(geo, torch.zeros(1, dtype=torch.float64))
    expected = emb.fc2(torch.relu(emb.fc1.bias))  # coordinates (0, 0)
    torch.testing.assert_close(out[0, 0], expected, **tol("reference", torch.float64, "fwd"))


def _scale_block():
    block = ScaleBlock(DIM, HEADS, mlp_ratio=2.0, qkv_bias=True, drop_path=0.0, pos_embed_hidden=8).double()
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return block


def test_scale_block_queries_and_keys_use_their_own_norms():
    block = _scale_block()
    x = torch.randn(3, 5, 7, DIM, dtype=torch.float64)
    q = block.queries(x)
    k, v = block.keys_values(x)
    assert q.shape == k.shape == v.shape == (3, 5, 7, HEADS, DIM // HEADS)
    f64 = tol("reference", torch.float64, "fwd")
    norm_q = F.layer_norm(x, (DIM,), block.norm_q.weight, block.norm_q.bias, block.norm_q.eps)
    norm_kv = F.layer_norm(x, (DIM,), block.norm_kv.weight, block.norm_kv.bias, block.norm_kv.eps)
    torch.testing.assert_close(q.flatten(-2), norm_q @ block.q.weight.T + block.q.bias, **f64)
    kv = norm_kv @ block.kv.weight.T + block.kv.bias
    torch.testing.assert_close(k.flatten(-2), kv[..., :DIM], **f64)
    torch.testing.assert_close(v.flatten(-2), kv[..., DIM:], **f64)
    with torch.no_grad():
        block.norm_q.weight.mul_(2.0)
    torch.testing.assert_close(block.keys_values(x)[0], k)  # K/V do not read the query norm
    assert not torch.allclose(block.queries(x), q)


def test_scale_block_update_is_two_pre_norm_residuals():
    block = _scale_block()
    x = torch.randn(1, 4, 6, DIM, dtype=torch.float64)
    attn = torch.randn(1, 4, 6, HEADS, DIM // HEADS, dtype=torch.float64)
    mid = x + block.proj(attn.flatten(-2))
    expected = mid + block.mlp(block.norm2(mid))
    torch.testing.assert_close(block.update(x, attn), expected, **tol("reference", torch.float64, "fwd"))


def test_scale_block_drop_path_only_in_training():
    block = ScaleBlock(DIM, HEADS, 2.0, True, drop_path=0.5, pos_embed_hidden=8).double()
    x = torch.randn(64, 2, 2, DIM, dtype=torch.float64)
    attn = torch.randn(64, 2, 2, HEADS, DIM // HEADS, dtype=torch.float64)
    block.eval()
    mid = x + block.proj(attn.flatten(-2))
    torch.testing.assert_close(block.update(x, attn), mid + block.mlp(block.norm2(mid)))
    block.train()
    torch.manual_seed(0)
    out = block.update(x, attn)
    unchanged = (out - x).abs().amax(dim=(1, 2, 3)) == 0  # samples whose two residual branches were both dropped
    assert 0 < int(unchanged.sum()) < 64
