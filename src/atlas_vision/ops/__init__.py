"""The Multi-Scale Attention primitive: geometry and functional attention ops. No ``nn.Parameter`` lives here.

Tensor layout of the ops: per-head token maps ``[B, h, w, n_heads, d_head]`` (one per scale, unpadded); volumes
(3-D layouts) use ``[B, d, h, w, n_heads, d_head]`` with the same functions.
Scales are 0-based (scale 0 = the stem's token grid = the paper's scale 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from atlas_vision.ops.dispatch import BACKENDS, Backend, BackendSpec, Pass, resolve_backend
from atlas_vision.ops.grad_mode import needs_grad
from atlas_vision.ops.layout import (
    MultiScaleLayout,
    Routing,
    ScaleGeometry,
    Size2D,
    Size3D,
    SizeND,
    axes_name,
    ceil_div,
    to_2tuple,
    to_ntuple,
)
from atlas_vision.ops.summarize import PoolOp, scale_pyramid, summarize
from atlas_vision.ops.windowed import WindowContext, attend_windows, fit_window, windowed_attention

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendSpec",
    "MultiScaleLayout",
    "Pass",
    "PoolOp",
    "Routing",
    "ScaleGeometry",
    "Size2D",
    "Size3D",
    "SizeND",
    "WindowContext",
    "attend_windows",
    "bottomup_attention",
    "ceil_div",
    "fit_window",
    "resolve_backend",
    "scale_pyramid",
    "summarize",
    "to_2tuple",
    "to_ntuple",
    "topdown_attention",
    "windowed_attention",
]


def _check_map(name: str, x: torch.Tensor, grid: SizeND, heads_dim: tuple[int, int] | None = None) -> None:
    ndim = len(grid)
    if x.dim() != ndim + 3:
        axes = axes_name(ndim)[1:-1]  # "h, w" or "d, h, w"
        raise ValueError(
            f"{name} must be a [B, {axes}, n_heads, d_head] tensor for this {ndim}-D layout, got shape {tuple(x.shape)}"
        )
    if tuple(x.shape[1:-2]) != tuple(grid):
        raise ValueError(f"{name} has grid {tuple(x.shape[1:-2])} but the layout expects {tuple(grid)}")
    if heads_dim is not None and tuple(x.shape[-2:]) != heads_dim:
        raise ValueError(f"{name} has (n_heads, d_head) = {tuple(x.shape[-2:])}, expected {heads_dim}")


def topdown_attention(
    q: torch.Tensor,
    keys: Sequence[torch.Tensor],
    values: Sequence[torch.Tensor],
    layout: MultiScaleLayout,
    scale: int,
    *,
    softmax_scale: float | None = None,
    backend: Backend | str | None = None,
) -> torch.Tensor:
    """Top-down (global-context) windowed attention of one scale (spec 1.4, eq. 2).

    Each window of scale ``scale`` attends to its own tokens and, for every coarser scale whose K/V are given, to
    the one window of that scale that spatially contains it. With only the own-scale K/V given this is plain
    non-overlapping window attention.

    Args:
        q: ``[B, h, w, n, d]`` queries of scale ``scale`` (``(h, w) = layout[scale].grid``).
        keys: K maps of scales ``scale, scale + 1, ..., scale + len(keys) - 1``, each ``[B, h_m, w_m, n, d]``.
        values: V maps, same shapes as ``keys``.
        layout: the :class:`MultiScaleLayout` of the token grid.
        scale: 0-based index of the querying scale.

    Returns:
        ``[B, h, w, n, d]``.

    Other Parameters:
        softmax_scale: defaults to ``d ** -0.5``.
        backend: :class:`Backend` or its name (``None``/``auto`` = the fastest that can run, see
            :mod:`atlas_vision.ops.dispatch`); a forced backend that cannot run the inputs raises ``ValueError``.

    Equivalent computation: :func:`atlas_vision.ops.reference.reference_topdown_attention` (dense attention under a
    visibility mask built from token coordinates).

    Example:
        >>> layout = MultiScaleLayout.from_grid((40, 24), window=8, stride=4)  # 3 scales: 40x24, 10x6, 3x2
        >>> qkv = [torch.randn(2, *g.grid, 4, 16) for g in layout.scales]
        >>> topdown_attention(qkv[0], qkv, qkv, layout, scale=0).shape
        torch.Size([2, 40, 24, 4, 16])
    """
    if not 0 <= scale < layout.num_scales:
        raise ValueError(f"scale must be in [0, {layout.num_scales - 1}], got {scale}")
    if len(keys) != len(values) or not 1 <= len(keys) <= layout.num_scales - scale:
        raise ValueError(
            f"need 1..{layout.num_scales - scale} key/value maps (scales {scale}..{layout.num_scales - 1}), got "
            f"{len(keys)} keys and {len(values)} values"
        )
    _check_map("q", q, layout[scale].grid)
    for offset, (k, v) in enumerate(zip(keys, values)):
        _check_map(f"keys[{offset}]", k, layout[scale + offset].grid, tuple(q.shape[-2:]))
        _check_map(f"values[{offset}]", v, layout[scale + offset].grid, tuple(q.shape[-2:]))
    if layout.routing is not Routing.SPATIAL:  # only sdpa reads the pairing from layout.ancestor_windows
        asked = Backend.parse(backend)
        if asked not in (Backend.AUTO, Backend.SDPA):
            raise ValueError(f"routing={layout.routing.value!r} needs the sdpa backend, got {asked.value!r}")
        backend = Backend.SDPA
    spec = resolve_backend(backend, Pass.TOP_DOWN, q, needs_grad(q, *keys, *values))
    return spec.implementation(Pass.TOP_DOWN)(q, keys, values, layout, scale, softmax_scale)


def bottomup_attention(
    q: torch.Tensor,
    k_fine: torch.Tensor,
    v_fine: torch.Tensor,
    layout: MultiScaleLayout,
    scale: int,
    *,
    softmax_scale: float | None = None,
    backend: Backend | str | None = None,
) -> torch.Tensor:
    """Bottom-up (fine-to-coarse refinement) attention of one scale (spec 1.5, eq. 3).

    Each token of scale ``scale >= 1`` attends only to the tokens of the window of scale ``scale - 1`` it was pooled
    from.

    Args:
        q: ``[B, h, w, n, d]`` queries of scale ``scale``.
        k_fine: ``[B, h_f, w_f, n, d]`` keys of scale ``scale - 1``.
        v_fine: values of scale ``scale - 1``, same shape as ``k_fine``.
        layout: the :class:`MultiScaleLayout`.
        scale: 0-based index of the querying (coarse) scale, >= 1.

    Returns:
        ``[B, h, w, n, d]``.

    Other Parameters:
        softmax_scale: defaults to ``d ** -0.5``.
        backend: :class:`Backend` or its name, as for :func:`topdown_attention`.

    Equivalent computation: :func:`atlas_vision.ops.reference.reference_bottomup_attention`.
    """
    if not 1 <= scale < layout.num_scales:
        raise ValueError(f"bottom-up scale must be in [1, {layout.num_scales - 1}], got {scale}")
    _check_map("q", q, layout[scale].grid)
    _check_map("k_fine", k_fine, layout[scale - 1].grid, tuple(q.shape[-2:]))
    _check_map("v_fine", v_fine, layout[scale - 1].grid, tuple(q.shape[-2:]))
    spec = resolve_backend(backend, Pass.BOTTOM_UP, q, needs_grad(q, k_fine, v_fine))
    return spec.implementation(Pass.BOTTOM_UP)(q, k_fine, v_fine, layout, scale, softmax_scale)
