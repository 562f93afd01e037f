"""FlexAttention backend: each MSA pass as one ``torch.nn.attention.flex_attention`` call under a block mask.

Token order is **window-major**: every scale is padded to whole windows and cut with
:func:`atlas_vision.ops.windows.to_windows`, then flattened to ``[B, n, W*T, d]`` (window ``w``'s tokens are the
``T`` consecutive positions ``w*T .. w*T + T - 1``). So a window's queries and its keys are contiguous runs, which is
what makes the block mask sparse: FlexAttention skips every 128x128 (q, kv) block in which no query sees a key.

Visibility, read from the layout (the same rules as :mod:`atlas_vision.ops.reference`, which is built from token
coordinates instead):

* top-down at scale ``l``: the key sequence is the window-major tokens of scales ``l, l+1, ...`` one after the other;
  query window ``w`` sees key ``j`` of scale ``m`` iff ``j`` lies in window ``ancestor(w, m)`` of scale ``m``
  (``w`` itself for ``m = l``; :meth:`MultiScaleLayout.ancestor_windows`) **and** ``j`` is a real token, not padding;
* bottom-up at scale ``l``: the coarse queries are cut into the blocks pooled from one fine window (as in
  :mod:`atlas_vision.ops.sdpa`); block ``w`` sees the real tokens of fine window ``w``.

Block masks are cached per ``(pass, layout, scale, number of key scales, device)`` in a bounded LRU
(:data:`BLOCK_MASK_CACHE_SIZE` entries), so a stream of new image sizes evicts old masks instead of growing memory.
On CUDA the call goes through ``torch.compile(flex_attention)`` (fused Triton kernels; dynamo marks sizes dynamic
after the second distinct shape) and the masks through ``torch.compile(create_block_mask)``, both with
:data:`RECOMPILE_LIMIT` graphs allowed; every mask shares one ``mask_mod`` (:func:`_window_table_mask_mod`) so that
new masks do not force new graphs. On CPU it runs eager (see :func:`_attention` for why) and forward only (PyTorch raises on a CPU backward), so the declaration in
:mod:`atlas_vision.ops.dispatch` makes it differentiable on CUDA only; a CPU forward is how it is tested against the
float64 reference without a GPU.
"""

from __future__ import annotations

import importlib.util
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import torch

from atlas_vision.ops.layout import MultiScaleLayout
from atlas_vision.ops.windows import from_windows, to_windows, window_validity

#: Smallest head dim FlexAttention's Triton kernels take ("NYI: embedding dimension ... must be at least 16",
#: torch/_inductor/kernel/flex/flex_attention.py, torch 2.14.1); the CPU path has no minimum.
FLEX_MIN_HEAD_DIM_CUDA = 16

#: Most block masks kept at once (each holds O(num_blocks^2) ints; a new image size adds one per pass and scale).
BLOCK_MASK_CACHE_SIZE = 64

#: ``torch.compile`` backend per device type for ``flex_attention`` and ``create_block_mask``; a device type not
#: named here (CPU) runs both eager (see :func:`_attention`).
COMPILE_BACKEND: dict[str, str] = {"cuda": "inductor"}

#: Compiled graphs allowed per function while this backend calls it (dynamo's default ``recompile_limit`` is 8).
#: A pass specialises on sizes 0/1 (batch 1, one 128-token block at a coarse scale), grad mode and dtype, so a
#: model trained and evaluated at a few image sizes passes 8 graphs; past the limit dynamo silently runs the eager
#: implementation, which materialises the whole score matrix (``tests/test_flex.py`` counts the graphs).
RECOMPILE_LIMIT = 64

_block_masks: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_compiled: dict[tuple[str, str], Callable[..., Any]] = {}


def flex_unavailable() -> str | None:
    """Why this torch build cannot run FlexAttention, or ``None`` if it can."""
    if importlib.util.find_spec("torch.nn.attention.flex_attention") is None:  # torch < 2.5
        return f"torch {torch.__version__} has no torch.nn.attention.flex_attention"
    return None


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_mask: Any, scale: float | None) -> torch.Tensor:
    """``flex_attention(q, k, v, block_mask=..., scale=...)``, compiled where :data:`COMPILE_BACKEND` says so.

    Not compiled on CPU, measured with torch 2.14.1 on this project's CPU (docs/benchmarks.md section 11): the
    compiled CPU kernel runs one 64x64-token top-down pass (6 heads of 64, 1 thread) in 81 ms against split's 53 ms
    and eager's 3.0 s, but the second distinct shape, once dynamo marks sizes dynamic, fails to build
    (``CppCompileError``), and float64 is not lowered at all. Eager FlexAttention materialises the whole ``[q, kv]``
    score matrix: on CPU this backend is a forward-only check of the block masks, not a fast path (use ``split`` /
    ``auto`` there).
    """
    from torch.nn.attention.flex_attention import flex_attention

    backend = COMPILE_BACKEND.get(q.device.type)
    if backend is None:
        with warnings.catch_warnings():  # eager is the documented choice here, not an accident
            warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
            return flex_attention(q, k, v, block_mask=block_mask, scale=scale)
    return _compiled_call(flex_attention, backend, q, k, v, block_mask=block_mask, scale=scale)


def _compiled_call(fn: Callable[..., Any], backend: str, *args: Any, **kwargs: Any) -> Any:
    """``torch.compile(fn, backend=backend)(*args, **kwargs)`` with at least :data:`RECOMPILE_LIMIT` graphs allowed.

    Inside a region that is itself being compiled (``torch.compile(model)``), ``fn`` is called as is: dynamo traces
    it into the outer graph.
    """
    if torch.compiler.is_compiling():
        return fn(*args, **kwargs)
    key = (fn.__name__, backend)
    if key not in _compiled:
        _compiled[key] = torch.compile(fn, backend=backend)
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # its name before 2.6
    with config.patch(**{name: max(getattr(config, name), RECOMPILE_LIMIT)}):
        return _compiled[key](*args, **kwargs)


def block_mask_cache_len() -> int:
    """Number of block masks cached now (at most :data:`BLOCK_MASK_CACHE_SIZE`)."""
    return len(_block_masks)


def clear_block_mask_cache() -> None:
    """Drop every cached block mask."""
    _block_masks.clear()


def _cached_block_mask(key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
    """The cached mask for ``key``, else ``build()`` cached.

    Built outside inference mode: FlexAttention saves the mask's tensors for backward, and a mask first built
    under ``torch.inference_mode()`` (an evaluation pass) would hold inference tensors that a later training
    step at the same size cannot save ("Inference tensors cannot be saved for backward").
    """
    if key in _block_masks:
        _block_masks.move_to_end(key)
        return _block_masks[key]
    with torch.inference_mode(False):
        mask = build()
    _block_masks[key] = mask
    while len(_block_masks) > BLOCK_MASK_CACHE_SIZE:
        _block_masks.popitem(last=False)
    return mask


def _block_mask(
    mask_mod: Callable[..., torch.Tensor], q_len: int, kv_len: int, device: torch.device
) -> Any:  # BlockMask (its module is imported lazily)
    from torch.nn.attention.flex_attention import create_block_mask

    # compiled on CUDA so the [q_len, kv_len] mask is never materialised (1M-token grids); eager on CPU, as above
    backend = COMPILE_BACKEND.get(device.type)
    if backend is None:
        return create_block_mask(mask_mod, None, None, q_len, kv_len, device=device)
    return _compiled_call(create_block_mask, backend, mask_mod, None, None, q_len, kv_len, device=device)


def _to_sequence(x_bWntd: torch.Tensor) -> torch.Tensor:
    """``[B, W, n, T, d]`` -> ``[B, n, W*T, d]`` (window-major token order)."""
    b, nw, n, t, d = x_bWntd.shape
    return x_bWntd.transpose(1, 2).reshape(b, n, nw * t, d)


def _from_sequence(x_bnLd: torch.Tensor, num_windows_total: int) -> torch.Tensor:
    """``[B, n, W*T, d]`` -> ``[B, W, n, T, d]``."""
    b, n, length, d = x_bnLd.shape
    return x_bnLd.view(b, n, num_windows_total, length // num_windows_total, d).transpose(1, 2)


def _window_table_mask_mod(
    query_tokens: torch.Tensor, key_slot: torch.Tensor, key_window: torch.Tensor, table: torch.Tensor
) -> Callable[..., torch.Tensor]:
    """The one ``mask_mod`` of this backend: query ``q`` sees key ``kv`` iff
    ``table[key_slot[kv] + q // query_tokens] == key_window[kv]``.

    ``q // query_tokens`` is the query's window (top-down) or pooled block (bottom-up); ``key_slot[kv]`` picks the
    row of ``table`` for the key's scale, whose entries are the window of that scale each query window reads;
    ``key_window[kv]`` is the key's own window at its scale, ``-1`` for a padding key (never equal to a table entry).

    Every captured value is a tensor (``query_tokens`` 0-dim) and every mask shares this function's code: dynamo
    guards a compiled ``flex_attention`` on the ``mask_mod``'s code object and specialises captured Python ints, so
    separate top-down / bottom-up closures with int captures cost one recompile per pass and per window size and,
    once ``torch._dynamo.config.recompile_limit`` is reached, silently fall back to the eager implementation, which
    materialises the whole score matrix (``tests/test_flex.py`` counts the compiled graphs over many sizes).
    """

    def mask_mod(b, h, q_idx, kv_idx):
        return table[key_slot[kv_idx] + q_idx // query_tokens] == key_window[kv_idx]

    return mask_mod


def _key_windows(geo: Any, device: torch.device) -> torch.Tensor:
    """``long [W*T]``: each window-major token's window index at its scale, ``-1`` where it is padding."""
    windows = torch.arange(geo.windows_total * geo.tokens_per_window) // geo.tokens_per_window
    valid = window_validity(geo.grid, geo.num_windows, geo.window, torch.device("cpu")).reshape(-1)
    return torch.where(valid, windows, -1).to(device)


def _topdown_block_mask(layout: MultiScaleLayout, scale: int, num_key_scales: int, device: torch.device) -> Any:
    geo = layout[scale]
    t_q, num_w = geo.tokens_per_window, geo.windows_total
    key_slot, key_window, table = [], [], []
    for offset in range(num_key_scales):
        src = layout[scale + offset]
        count = src.windows_total * src.tokens_per_window
        key_slot.append(torch.full((count,), offset * num_w, dtype=torch.long))
        key_window.append(_key_windows(src, torch.device("cpu")))
        own = tuple(range(num_w)) if offset == 0 else layout.ancestor_windows(scale, scale + offset)
        table.append(torch.tensor(own, dtype=torch.long))
    # per key: the table row of its scale offset and its window at that scale; per (offset, query window): the
    # window of that scale the query window reads (a flat table [num_key_scales * W])
    mask_mod = _window_table_mask_mod(
        torch.tensor(t_q, device=device),
        torch.cat(key_slot).to(device),
        torch.cat(key_window).to(device),
        torch.cat(table).to(device),
    )
    return _block_mask(mask_mod, num_w * t_q, sum(k.numel() for k in key_slot), device)


def _bottomup_block_mask(layout: MultiScaleLayout, scale: int, device: torch.device) -> Any:
    fine = layout[scale - 1]
    block_tokens = math.prod(layout.bottomup_block(scale))
    # block w of the coarse queries reads fine window w: the identity table, one row
    key_window = _key_windows(fine, device)
    mask_mod = _window_table_mask_mod(
        torch.tensor(block_tokens, device=device),
        torch.zeros_like(key_window),
        key_window,
        torch.arange(fine.windows_total, device=device),
    )
    return _block_mask(mask_mod, fine.windows_total * block_tokens, key_window.numel(), device)


def flex_topdown_attention(
    q: torch.Tensor,
    keys: Sequence[torch.Tensor],
    values: Sequence[torch.Tensor],
    layout: MultiScaleLayout,
    scale: int,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """Top-down windowed attention of scale ``scale``; see :func:`atlas_vision.ops.topdown_attention`."""
    geo = layout[scale]
    q_seq = _to_sequence(to_windows(q, geo.num_windows, geo.window))  # [B, n, W*T, d]
    k_parts, v_parts = [], []
    for offset, (k, v) in enumerate(zip(keys, values)):
        src = layout[scale + offset]
        k_parts.append(_to_sequence(to_windows(k, src.num_windows, src.window)))  # [B, n, W_src*T_src, d]
        v_parts.append(_to_sequence(to_windows(v, src.num_windows, src.window)))
    k_seq = torch.cat(k_parts, dim=2) if len(k_parts) > 1 else k_parts[0]  # [B, n, sum_m W_m*T_m, d]
    v_seq = torch.cat(v_parts, dim=2) if len(v_parts) > 1 else v_parts[0]
    key = ("top_down", layout, scale, len(keys), q.device)
    mask = _cached_block_mask(key, lambda: _topdown_block_mask(layout, scale, len(keys), q.device))
    out = _attention(q_seq, k_seq, v_seq, mask, softmax_scale)  # [B, n, W*T, d]
    return from_windows(_from_sequence(out, geo.windows_total), geo.num_windows, geo.window, geo.grid)


def flex_bottomup_attention(
    q: torch.Tensor,
    k_fine: torch.Tensor,
    v_fine: torch.Tensor,
    layout: MultiScaleLayout,
    scale: int,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """Bottom-up attention of scale ``scale`` into scale ``scale - 1``; see :func:`atlas_vision.ops.bottomup_attention`."""
    fine, coarse = layout[scale - 1], layout[scale]
    block = layout.bottomup_block(scale)  # (kh/sh, kw/sw) (or 3-D); the coarse grid if the fine scale is one window
    q_seq = _to_sequence(to_windows(q, fine.num_windows, block))  # [B, n, W_fine*block tokens, d]
    k_seq = _to_sequence(to_windows(k_fine, fine.num_windows, fine.window))  # [B, n, W_fine*T_fine, d]
    v_seq = _to_sequence(to_windows(v_fine, fine.num_windows, fine.window))
    key = ("bottom_up", layout, scale, q.device)
    mask = _cached_block_mask(key, lambda: _bottomup_block_mask(layout, scale, q.device))
    out = _attention(q_seq, k_seq, v_seq, mask, softmax_scale)
    return from_windows(_from_sequence(out, fine.windows_total), fine.num_windows, block, coarse.grid)
