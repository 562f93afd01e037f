"""Scale geometry: grids, stop rule, window partitions and ancestry on awkward token grids."""

from __future__ import annotations

import math

import pytest
import torch

from atlas_vision.ops import MultiScaleLayout
from atlas_vision.ops.layout import ceil_div
from atlas_vision.ops.windows import window_validity

# (grid, window, stride, expected per-scale grids)
CASES = [
    ((16, 16), 16, 4, [(16, 16)]),  # 256 px / P16: one scale, one window
    ((32, 32), 16, 4, [(32, 32), (8, 8)]),  # 512 px
    ((64, 64), 16, 4, [(64, 64), (16, 16)]),  # 1024 px
    ((128, 128), 16, 4, [(128, 128), (32, 32), (8, 8)]),  # 2048 px
    ((256, 256), 16, 4, [(256, 256), (64, 64), (16, 16)]),  # 4096 px
    ((48, 80), 16, 4, [(48, 80), (12, 20), (3, 5)]),  # landscape
    ((80, 48), 16, 4, [(80, 48), (20, 12), (5, 3)]),  # portrait
    ((8, 256), 16, 4, [(8, 256), (2, 64), (1, 16)]),  # extreme aspect ratio
    ((37, 53), 8, 2, [(37, 53), (19, 27), (10, 14), (5, 7)]),  # nothing divides: 4 scales
    ((1, 1), 4, 2, [(1, 1)]),
]


@pytest.mark.parametrize("grid,window,stride,expected", CASES, ids=lambda v: str(v))
def test_scale_grids_follow_ceil_pooling_and_stop_rule(grid, window, stride, expected):
    layout = MultiScaleLayout.from_grid(grid, window, stride)
    assert [g.grid for g in layout.scales] == expected
    # stop rule: only the last scale fits in one window
    fits = [g.grid[0] <= window and g.grid[1] <= window for g in layout.scales]
    assert fits[-1] and not any(fits[:-1])
    # L = ceil(log_S(N / K)) + 1 for square grids (spec 1.2)
    if grid[0] == grid[1] and grid[0] % window == 0:
        n, k, s = grid[0] * grid[1], window * window, stride * stride
        assert layout.num_scales == (1 if n <= k else math.ceil(math.log(n / k) / math.log(s)) + 1)


@pytest.mark.parametrize("grid,window,stride,expected", CASES, ids=lambda v: str(v))
def test_windows_partition_every_token_exactly_once(grid, window, stride, expected):
    layout = MultiScaleLayout.from_grid(grid, window, stride)
    for geo in layout.scales:
        valid = window_validity(geo.grid, geo.num_windows, geo.window, torch.device("cpu"))
        assert valid.shape == (geo.windows_total, geo.tokens_per_window)
        assert int(valid.sum()) == geo.num_tokens  # every real token in exactly one window slot
        assert bool(valid.any(dim=1).all())  # no window is all padding
        if geo.is_single_window:
            assert geo.window == geo.grid and not geo.needs_padding


@pytest.mark.parametrize("grid,window,stride", [((37, 53), 8, 2), ((48, 80), 16, 4), ((40, 24), (8, 4), (4, 2))])
def test_ancestor_window_contains_every_pooled_token(grid, window, stride):
    layout = MultiScaleLayout.from_grid(grid, window, stride, min_scales=3)
    sh, sw = layout.stride
    for fine in range(layout.num_scales - 1):
        geo = layout[fine]
        for coarse in range(fine + 1, layout.num_scales):
            cgeo = layout[coarse]
            ancestors = layout.ancestor_windows(fine, coarse)
            for index in range(geo.windows_total):
                i, j = divmod(index, geo.num_windows[1])
                rows = range(i * geo.window[0], min((i + 1) * geo.window[0], geo.grid[0]))
                cols = range(j * geo.window[1], min((j + 1) * geo.window[1], geo.grid[1]))
                levels = coarse - fine
                containing = {
                    (r // sh**levels // cgeo.window[0]) * cgeo.num_windows[1] + (c // sw**levels // cgeo.window[1])
                    for r in rows
                    for c in cols
                }
                assert containing == {ancestors[index]}


def test_min_and_max_scales():
    assert MultiScaleLayout.from_grid((16, 16), 16, 4, min_scales=2).num_scales == 2
    single = MultiScaleLayout.from_grid((64, 40), 16, 4, max_scales=1)
    assert single.num_scales == 1 and single[0].num_windows == (4, 3)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"grid": (16, 16), "window": 6, "stride": 4}, "divisible"),
        ({"grid": (16, 16), "window": 8, "stride": 1}, "stride"),
        ({"grid": (0, 16), "window": 8, "stride": 2}, "at least 1x1"),
        ({"grid": (16, 16), "window": (8, 8, 8), "stride": 2}, "window"),
        ({"grid": (16, 16), "window": 8, "stride": 2, "min_scales": 0}, "min_scales"),
    ],
)
def test_invalid_geometry_raises_value_error_with_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiScaleLayout.from_grid(**kwargs)


def test_ceil_div_is_ceiling_division():
    for a in range(70):
        for b in range(1, 9):
            assert ceil_div(a, b) == math.ceil(a / b), (a, b)
