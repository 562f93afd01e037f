"""3-D scale geometry: per-axis ceil pooling, stop rule, window partitions and ancestry on awkward volumes."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from atlas_vision.ops import MultiScaleLayout, PoolOp, summarize
from atlas_vision.ops.windows import from_windows, to_windows, window_validity

# (grid, window, stride, expected per-scale grids)
CASES = [
    ((8, 8, 8), 8, 2, [(8, 8, 8)]),  # one scale, one window
    ((32, 32, 32), 8, 2, [(32, 32, 32), (16, 16, 16), (8, 8, 8)]),  # 512^3 voxels at patch 16
    ((6, 10, 7), 4, 2, [(6, 10, 7), (3, 5, 4), (2, 3, 2)]),  # nothing divides
    ((9, 17, 17), 4, 2, [(9, 17, 17), (5, 9, 9), (3, 5, 5), (2, 3, 3)]),  # 4 scales
    ((5, 9, 12), (2, 4, 4), 2, [(5, 9, 12), (3, 5, 6), (2, 3, 3)]),  # anisotropic window
    ((12, 20, 10), (4, 8, 4), (2, 4, 2), [(12, 20, 10), (6, 5, 5), (3, 2, 3)]),  # anisotropic window and stride
    ((2, 64, 64), 8, 2, [(2, 64, 64), (1, 32, 32), (1, 16, 16), (1, 8, 8)]),  # thin slab
    ((1, 1, 1), 4, 2, [(1, 1, 1)]),
]


@pytest.mark.parametrize("grid,window,stride,expected", CASES, ids=lambda v: str(v))
def test_3d_scale_grids_follow_per_axis_ceil_pooling_and_stop_rule(grid, window, stride, expected):
    layout = MultiScaleLayout.from_grid(grid, window, stride)
    assert layout.ndim == 3
    assert [g.grid for g in layout.scales] == expected
    win = layout.window
    fits = [all(s <= k for s, k in zip(g.grid, win)) for g in layout.scales]
    assert fits[-1] and not any(fits[:-1])
    for geo in layout.scales:
        assert geo.num_tokens == math.prod(geo.grid)
        if not geo.is_single_window:
            assert geo.num_windows == tuple(-(-g // k) for g, k in zip(geo.grid, win))


@pytest.mark.parametrize("grid,window,stride,expected", CASES, ids=lambda v: str(v))
def test_3d_windows_partition_every_token_exactly_once(grid, window, stride, expected):
    layout = MultiScaleLayout.from_grid(grid, window, stride)
    for geo in layout.scales:
        valid = window_validity(geo.grid, geo.num_windows, geo.window, torch.device("cpu"))
        assert valid.shape == (geo.windows_total, geo.tokens_per_window)
        assert int(valid.sum()) == geo.num_tokens
        assert bool(valid.any(dim=1).all())
        # tag each token with its coordinates; the windows must hold exactly the coordinates of their box
        coords = torch.stack(torch.meshgrid(*[torch.arange(g) for g in geo.grid], indexing="ij"), -1)  # [d,h,w,3]
        parts = to_windows(coords[None, ..., None, :].double() + 1, geo.num_windows, geo.window)  # [1, W, 1, T, 3]
        for flat in range(geo.windows_total):
            index = _unravel(flat, geo.num_windows)
            box = [range(i * k, min((i + 1) * k, g)) for i, k, g in zip(index, geo.window, geo.grid)]
            want = {tuple(c + 1 for c in point) for point in itertools.product(*box)}
            got = {tuple(int(v) for v in row) for row in parts[0, flat, 0] if row[0] > 0}
            assert got == want
        round_trip = from_windows(parts, geo.num_windows, geo.window, geo.grid)
        torch.testing.assert_close(round_trip, coords[None, ..., None, :].double() + 1, rtol=0, atol=0)


def _unravel(flat, shape):
    index = []
    for n in reversed(shape):
        flat, i = divmod(flat, n)
        index.append(i)
    return tuple(reversed(index))


@pytest.mark.parametrize(
    "grid,window,stride", [((9, 17, 17), 4, 2), ((12, 20, 10), (4, 8, 4), (2, 4, 2)), ((6, 10, 7), 4, 2)]
)
def test_3d_ancestor_window_contains_every_pooled_token(grid, window, stride):
    layout = MultiScaleLayout.from_grid(grid, window, stride, min_scales=3)
    for fine in range(layout.num_scales - 1):
        geo = layout[fine]
        for coarse in range(fine + 1, layout.num_scales):
            cgeo = layout[coarse]
            levels = coarse - fine
            ancestors = layout.ancestor_windows(fine, coarse)
            for flat in range(geo.windows_total):
                index = _unravel(flat, geo.num_windows)
                box = [range(i * k, min((i + 1) * k, g)) for i, k, g in zip(index, geo.window, geo.grid)]
                containing = set()
                for point in itertools.product(*box):
                    pooled = [c // s**levels // k for c, s, k in zip(point, layout.stride, cgeo.window)]
                    containing.add((pooled[0] * cgeo.num_windows[1] + pooled[1]) * cgeo.num_windows[2] + pooled[2])
                assert containing == {ancestors[flat]}


@pytest.mark.parametrize("op", list(PoolOp))
def test_3d_summarize_ceil_mode_pools_only_real_tokens(op):
    x = torch.randn(2, 5, 7, 6, 3)
    out = summarize(x, (2, 4, 4), op)
    assert out.shape == (2, 3, 2, 2, 3)
    for z, r, c in itertools.product(range(3), range(2), range(2)):
        block = x[:, 2 * z : 2 * z + 2, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4]
        want = block.amax(dim=(1, 2, 3)) if op is PoolOp.MAX else block.mean(dim=(1, 2, 3))
        torch.testing.assert_close(out[:, z, r, c], want)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"grid": (8, 8, 8), "window": (4, 4), "stride": 2}, r"window must be an int or a \(d, h, w\) tuple.*\(4, 4\)"),
        ({"grid": (8, 8, 8), "window": 4, "stride": (2, 2)}, r"stride .*\(2, 2\)"),
        ({"grid": (8, 0, 8), "window": 4, "stride": 2}, "at least 1x1x1, got 8x0x8"),
        ({"grid": (8, 8, 8), "window": (4, 6, 4), "stride": 4}, "divisible"),
        ({"grid": (8, 8, 8, 8), "window": 4, "stride": 2}, r"\(d, h, w\) triple"),
    ],
)
def test_3d_invalid_geometry_raises_value_error_with_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiScaleLayout.from_grid(**kwargs)


def test_summarize_rejects_a_stride_of_the_wrong_rank():
    with pytest.raises(ValueError, match=r"one stride per grid axis.*\(2, 2\)"):
        summarize(torch.randn(1, 4, 4, 4, 2), (2, 2))
