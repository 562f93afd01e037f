"""A whole MSA block written straight from the paper (Algorithm 1, spec 1.2-1.8): dense, float64, slow, for tests.

Nothing here is shared with :class:`~atlas_vision.layers.MSABlock`: no window partition, no layout object, no fused
kernel, no K/V cache. Every scale is a flat list of tokens with ``(row, col)`` coordinates (``(slice, row, col)`` for
volumes: the same rules on every axis); every attention is a dense
softmax over all keys of the scales involved under a visibility mask computed from those coordinates; LayerNorm,
Linear, GELU and max-pooling are written out. K/V are recomputed from the current tokens at every use -- the paper's
QKV cache (Appendix C) is an optimisation that must give exactly this.

Per block, with active scales ``first .. L-1`` (0-based; scale ``l`` uses weights ``weights[l - first]``):

0. every scale adds its position embedding: an MLP of the token's in-window coordinates
   ``(i - k//2) / max(k//2, 1)``; a scale no larger than the window is one window of exactly its grid (spec 1.3);
1. summary add, fine -> coarse: ``X(l) += maxpool(X(l-1))`` with kernel = stride = ``(sh, sw)``, ceil mode;
2. top-down, ``l = L-1 .. first``: ``X(l) <- X(l) + proj(MHA(Q_l, [K_l..K_{L-1}], [V_l..V_{L-1}]))``, then
   ``X(l) += MLP(LN2(X(l)))``; a query at ``(y, x)`` of scale ``l`` sees the keys of its own window and, for each
   coarser scale ``m``, the keys in the window of scale ``m`` that contains ``(y // sh**(m-l), x // sw**(m-l))``;
3. bottom-up, ``l = first+1 .. L-1``: ``X(l) <- X(l) + proj(MHA(Q_l, K_{l-1}, V_{l-1}))`` and the MLP, where a query
   at ``(y, x)`` sees the keys of the scale-``l-1`` window containing ``(y * sh, x * sw)`` (eq. 3: fine keys only).

Queries, output projection, LN2 and MLP belong to the querying scale; K/V to the scale they come from (its own
``norm_kv`` + ``kv``). Communication modes (Table 4) switch the pathways, see :data:`PATHWAYS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from atlas_vision.layers.scale_block import ScaleBlock

#: communication mode -> (summary add, top-down to coarser scales, bottom-up); without top-down a scale attends to its
#: own window only. ``single_scale`` is one scale, i.e. plain window attention.
PATHWAYS: dict[str, tuple[bool, bool, bool]] = {
    "full": (True, True, True),
    "top_down": (True, True, False),
    "bottom_up": (True, False, True),
    "none": (False, False, False),
    "single_scale": (False, False, False),
}


@dataclass(frozen=True)
class ScaleWeights:
    """The weights of one scale as plain float64 tensors (names as in :class:`ScaleBlock`)."""

    tensors: dict[str, torch.Tensor]
    num_heads: int
    eps: float

    @staticmethod
    def copy_of(block: ScaleBlock, requires_grad: bool = False) -> ScaleWeights:
        """Detached float64 copies of a :class:`ScaleBlock`'s parameters (leaves, optionally requiring grad)."""
        tensors = {
            name: p.detach().to(torch.float64).clone().requires_grad_(requires_grad)
            for name, p in block.named_parameters()
        }
        return ScaleWeights(tensors, block.num_heads, block.norm_q.eps)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]


# ------------------------------------------------------------------------------------------------- written-out layers
def _linear(x: torch.Tensor, w: ScaleWeights, name: str) -> torch.Tensor:
    out = x @ w[f"{name}.weight"].T
    bias = w.tensors.get(f"{name}.bias")
    return out if bias is None else out + bias


def _layer_norm(x: torch.Tensor, w: ScaleWeights, name: str) -> torch.Tensor:
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + w.eps) * w[f"{name}.weight"] + w[f"{name}.bias"]


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _mlp(x: torch.Tensor, w: ScaleWeights) -> torch.Tensor:
    return _linear(_gelu(_linear(x, w, "mlp.fc1")), w, "mlp.fc2")


# ------------------------------------------------------------------------------------------------- geometry of tokens
@dataclass(frozen=True)
class _Scale:
    """Token coordinates of one scale in raster order and the window each token lies in (any number of grid axes:
    ``(rows, cols)`` for images, ``(slices, rows, cols)`` for volumes)."""

    grid: tuple[int, ...]
    window: tuple[int, ...]  # the whole grid when the scale fits in one window

    def coords(self) -> list[torch.Tensor]:
        """Per-axis coordinates ``[N]`` of every token, tokens in raster order."""
        axes = [torch.arange(g) for g in self.grid]
        return [c.flatten() for c in torch.meshgrid(*axes, indexing="ij")]

    def window_of(self, coords: list[torch.Tensor]) -> list[torch.Tensor]:
        return [c // k for c, k in zip(coords, self.window)]


def _scales(xs: list[torch.Tensor], window: tuple[int, ...]) -> list[_Scale]:
    scales = []
    for x in xs:
        grid = tuple(x.shape[1:-1])
        fits = all(g <= k for g, k in zip(grid, window))
        scales.append(_Scale(grid, grid if fits else tuple(window)))
    return scales


def _same_window(q_win: list[torch.Tensor], k_win: list[torch.Tensor]) -> torch.Tensor:
    """bool ``[N_q, N_k]``: query's target window == key's window (on every axis)."""
    same = torch.ones(len(q_win[0]), len(k_win[0]), dtype=torch.bool)
    for q, k in zip(q_win, k_win):
        same &= q[:, None] == k[None, :]
    return same


# ------------------------------------------------------------------------------------------------------ block pieces
def _position_embedding(scale: _Scale, w: ScaleWeights) -> torch.Tensor:
    """``[N, C]``: MLP(ndim -> hidden -> C) of each token's normalised in-window coordinates."""
    coords = [c.to(torch.float64) for c in scale.coords()]
    in_window = torch.stack([c % k - k // 2 for c, k in zip(coords, scale.window)], dim=-1)  # [N, ndim], centred
    unit = in_window / torch.tensor([max(k // 2, 1) for k in scale.window], dtype=torch.float64)
    hidden = torch.relu(_linear(unit, w, "pos_embed.fc1"))
    return _linear(hidden, w, "pos_embed.fc2")


def _max_pool(fine: torch.Tensor, fine_scale: _Scale, coarse_scale: _Scale, stride: tuple[int, ...]) -> torch.Tensor:
    """``[B, N_fine, C] -> [B, N_coarse, C]``: each coarse token = max over the fine tokens of its stride block."""
    member = _same_window(
        [c // s for c, s in zip(fine_scale.coords(), stride)], coarse_scale.coords()
    ).T  # [N_coarse, N_fine]
    candidates = torch.where(member[None, :, :, None], fine[:, None, :, :], float("-inf"))  # [B, N_c, N_f, C]
    return candidates.amax(dim=2)


def _attention(
    x_q: torch.Tensor, w_q: ScaleWeights, sources: list[tuple[torch.Tensor, ScaleWeights]], visible: torch.Tensor
) -> torch.Tensor:
    """``MHA(Q, [K...], [V...])`` of tokens ``x_q [B, N_q, C]`` over the keys of ``sources`` (each source's tokens and
    its own weights), under ``visible [N_q, sum N_k]``; returns the heads concatenated, before the projection."""
    n = w_q.num_heads
    q = _linear(_layer_norm(x_q, w_q, "norm_q"), w_q, "q")  # [B, N_q, C]
    kv = torch.cat([_linear(_layer_norm(x, w, "norm_kv"), w, "kv") for x, w in sources], dim=1)  # [B, N_k, 2C]
    k, v = kv.chunk(2, dim=-1)
    b, nq, c = q.shape
    d = c // n
    q, k, v = (t.reshape(b, t.shape[1], n, d).transpose(1, 2) for t in (q, k, v))  # [B, n, N, d]
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)  # [B, n, N_q, N_k]
    weights = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)
    return (weights @ v).transpose(1, 2).reshape(b, nq, c)


def _update(x: torch.Tensor, attn: torch.Tensor, w: ScaleWeights) -> torch.Tensor:
    x = x + _linear(attn, w, "proj")
    return x + _mlp(_layer_norm(x, w, "norm2"), w)


# ------------------------------------------------------------------------------------------------------------ block
def reference_msa_block(
    xs: list[torch.Tensor],
    weights: list[ScaleWeights],
    window: tuple[int, ...],
    stride: tuple[int, ...],
    first_scale: int,
    communication: str,
) -> list[torch.Tensor]:
    """One MSA block (see the module docstring) in float64.

    Args:
        xs: one ``[B, h_l, w_l, C]`` map per scale (volumes: ``[B, d_l, h_l, w_l, C]``), scale ``l + 1`` of grid
            ``ceil(h_l / sh) x ceil(w_l / sw)`` (per axis).
        weights: one :class:`ScaleWeights` per active scale ``first_scale ..`` (finest first).
        window: ``(kh, kw)`` window of every scale larger than it.
        stride: ``(sh, sw)`` pooling stride.
        first_scale: the finest active scale; scales below it are returned unchanged.
        communication: a key of :data:`PATHWAYS`.

    Returns:
        the new maps, float64.
    """
    summary_add, top_down, bottom_up = PATHWAYS[communication]
    num = len(xs)
    active = list(range(first_scale, num))
    if len(weights) != len(active):
        raise ValueError(f"need one ScaleWeights per active scale ({len(active)}), got {len(weights)}")
    if communication == "single_scale" and len(active) != 1:
        raise ValueError("single_scale needs exactly one active scale")
    scales = _scales(xs, window)
    shapes = [x.shape for x in xs]
    tok = [x.to(torch.float64).flatten(1, -2) for x in xs]  # [B, N_l, C]
    w_of = {scale: weights[scale - first_scale] for scale in active}

    for scale in active:  # 0. position embedding
        tok[scale] = tok[scale] + _position_embedding(scales[scale], w_of[scale])
    if summary_add:  # 1. fine -> coarse
        for scale in active[1:]:
            tok[scale] = tok[scale] + _max_pool(tok[scale - 1], scales[scale - 1], scales[scale], stride)

    for scale in reversed(active):  # 2. top-down, coarse -> fine
        q_coords = scales[scale].coords()
        sources, masks = [], []
        for m in range(scale, num if top_down else scale + 1):
            levels = m - scale
            target = scales[m].window_of([c // s**levels for c, s in zip(q_coords, stride)])
            masks.append(_same_window(target, scales[m].window_of(scales[m].coords())))
            sources.append((tok[m], w_of[m]))
        attn = _attention(tok[scale], w_of[scale], sources, torch.cat(masks, dim=1))
        tok[scale] = _update(tok[scale], attn, w_of[scale])

    if bottom_up:  # 3. bottom-up, fine -> coarse
        for scale in active[1:]:
            fine = scales[scale - 1]
            source = fine.window_of([c * s for c, s in zip(scales[scale].coords(), stride)])
            visible = _same_window(source, fine.window_of(fine.coords()))
            attn = _attention(tok[scale], w_of[scale], [(tok[scale - 1], w_of[scale - 1])], visible)
            tok[scale] = _update(tok[scale], attn, w_of[scale])

    return [t.reshape(*shape[:-1], -1) for t, shape in zip(tok, shapes)]
