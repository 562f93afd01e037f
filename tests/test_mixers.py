"""Token mixers of the block-level benchmark (issue 4): shapes, gradients, dense references, mixer-specific properties.

References are written here as dense masked softmax attention in float64 (correct by inspection) and compared with
tight tolerances. The FasterViT comparison runs only where the optional ``fastervit`` package is installed.
"""

from __future__ import annotations

import math

import pytest
import timm
import torch
from tolerances import tol
from torch import nn

from atlas_vision.layers import Communication
from atlas_vision.mixers import (
    MIXER_CONFIGS,
    Composition,
    DilatedAttention,
    GlobalAttention,
    HatConfig,
    HierarchicalAttention,
    MambaVisionMixer,
    MixerBlock,
    MixerKind,
    MixerNet,
    MixerNetConfig,
    MSAConfig,
    ShiftedWindowAttention,
    WindowAttention,
    dilated_attention,
    geometric_schedule,
    selective_scan,
    selective_scan_reference,
)
from atlas_vision.mixers.msa import MultiScaleBody
from atlas_vision.ops import PoolOp

DIM, HEADS, WINDOW = 16, 2, 4
F64 = tol("reference", torch.float64, "fwd")  # float64 implementation vs float64 dense / loop reference
F64_GRAD = tol("reference", torch.float64, "bwd")

# grids: square, non-square, smaller than the window, not divisible by the window, a single token
GRIDS = [(8, 8), (5, 11), (3, 2), (9, 6), (1, 1)]


def make_mixer(kind: str) -> nn.Module:
    """One mixer of each kind at test size (swin in its shifted phase, where masking matters)."""
    if kind == "window":
        return WindowAttention(DIM, HEADS, WINDOW)
    if kind == "swin":
        return ShiftedWindowAttention(DIM, HEADS, WINDOW, shifted=True)
    if kind == "global":
        return GlobalAttention(DIM, HEADS)
    if kind == "hat":
        return HierarchicalAttention(DIM, HEADS, WINDOW, carrier_size=2)
    if kind == "dilated":
        return DilatedAttention(DIM, HEADS, base_segment=4, ratio=2)
    if kind == "mamba":
        return MambaVisionMixer(DIM, chunk_size=8)
    raise AssertionError(kind)


SINGLE_MAP = ["window", "swin", "global", "hat", "dilated", "mamba"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny shapes gain nothing from intra-op threads; on a shared CPU extra threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------------------------
# shapes and gradients of every mixer


@pytest.mark.parametrize("kind", SINGLE_MAP)
@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("batch", [1, 3])
def test_mixer_shape(kind: str, grid: tuple[int, int], batch: int) -> None:
    mixer = make_mixer(kind)
    out = mixer(torch.randn(batch, *grid, DIM))
    assert out.shape == (batch, *grid, DIM)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kind", SINGLE_MAP)
def test_mixer_gradients_reach_every_parameter(kind: str) -> None:
    mixer = make_mixer(kind)
    x = torch.randn(2, 9, 6, DIM, requires_grad=True)
    (mixer(x) * torch.randn(2, 9, 6, DIM)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    missing = [n for n, p in mixer.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"{kind}: no/invalid gradient for {missing}"


@pytest.mark.parametrize("kind", SINGLE_MAP)
def test_mixer_batch_independence(kind: str) -> None:
    """Sample i alone equals sample i inside a batch (catches batch/window axis mix-ups)."""
    mixer = make_mixer(kind).eval()
    x = torch.randn(3, 7, 10, DIM)
    with torch.no_grad():
        batched = mixer(x)
        alone = torch.cat([mixer(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, alone, **tol("mixer", torch.float32, "fwd"))


@pytest.mark.parametrize("kind", SINGLE_MAP)
def test_mixer_rejects_bad_input(kind: str) -> None:
    mixer = make_mixer(kind)
    with pytest.raises(ValueError, match="C=16"):
        mixer(torch.randn(1, 4, 4, DIM + 1))
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        mixer(torch.randn(4, 4, DIM))


# ---------------------------------------------------------------------------------------------------------------------
# dense references


def dense_reference(mixer: nn.Module, x: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """proj(softmax(q k^T / sqrt(d), masked by ``visible [N, N]``) v) with the mixer's own q/k/v/proj weights."""
    _, h, w, _ = x.shape
    q, k, v = (t.flatten(1, 2).transpose(1, 2) for t in mixer.attn.split(x))  # [B, n, N, d]
    logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    logits = logits.masked_fill(~visible, float("-inf"))
    out = torch.softmax(logits, dim=-1) @ v  # [B, n, N, d]
    return mixer.attn.merge(out.transpose(1, 2).unflatten(1, (h, w)))


def group_visibility(grid: tuple[int, int], window: tuple[int, int], shift: tuple[int, int]) -> torch.Tensor:
    """Swin/window visibility from coordinates: same group ``(y + k - s) // k`` on both axes (s = 0: plain windows)."""
    kh, kw = min(window[0], grid[0]), min(window[1], grid[1])
    sh = shift[0] if grid[0] > window[0] else 0
    sw = shift[1] if grid[1] > window[1] else 0
    ys, xs = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    gy = ((ys + kh - sh) // kh).flatten() if sh else (ys // kh).flatten()
    gx = ((xs + kw - sw) // kw).flatten() if sw else (xs // kw).flatten()
    return (gy[:, None] == gy[None, :]) & (gx[:, None] == gx[None, :])


@pytest.mark.parametrize("grid", [(8, 8), (9, 6), (5, 11), (3, 2)], ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("window", [(4, 4), (3, 5)], ids=lambda w: f"k{w[0]}x{w[1]}")
def test_window_matches_dense_reference(grid: tuple[int, int], window: tuple[int, int]) -> None:
    mixer = WindowAttention(DIM, HEADS, window).double()
    x = torch.randn(2, *grid, DIM, dtype=torch.float64)
    expected = dense_reference(mixer, x, group_visibility(grid, window, (0, 0)))
    torch.testing.assert_close(mixer(x), expected, **F64)


@pytest.mark.parametrize("grid", [(8, 8), (9, 6), (5, 11), (12, 7)], ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("window", [(4, 4), (4, 6)], ids=lambda w: f"k{w[0]}x{w[1]}")
@pytest.mark.parametrize("shifted", [False, True], ids=["regular", "shifted"])
def test_swin_matches_dense_reference(grid: tuple[int, int], window: tuple[int, int], shifted: bool) -> None:
    mixer = ShiftedWindowAttention(DIM, HEADS, window, shifted=shifted).double()
    x = torch.randn(2, *grid, DIM, dtype=torch.float64)
    expected = dense_reference(mixer, x, group_visibility(grid, window, mixer.shift))
    torch.testing.assert_close(mixer(x), expected, **F64)


def test_global_matches_dense_reference() -> None:
    mixer = GlobalAttention(DIM, HEADS).double()
    x = torch.randn(2, 5, 7, DIM, dtype=torch.float64)
    torch.testing.assert_close(mixer(x), dense_reference(mixer, x, torch.ones(35, 35, dtype=torch.bool)), **F64)


def _influence(mixer: nn.Module, grid: tuple[int, int], src: tuple[int, int], dst: tuple[int, int]) -> float:
    """How much the output at ``dst`` changes when the input at ``src`` is perturbed."""
    x = torch.randn(1, *grid, DIM, dtype=torch.float64)
    x2 = x.clone()
    x2[0, src[0], src[1]] += 1.0
    with torch.no_grad():
        return float((mixer(x2)[0, dst[0], dst[1]] - mixer(x)[0, dst[0], dst[1]]).abs().max())


def test_swin_shift_mask_blocks_wrapped_tokens() -> None:
    """8x8 grid, 4x4 windows, shift 2: after the roll, (7, 7) and (0, 0) share a window but were never neighbours, so
    the region mask must keep them apart; (2, 2) and (5, 5) are in one shifted window and must interact."""
    regular = ShiftedWindowAttention.for_block(0, DIM, HEADS, WINDOW).double()
    shifted = ShiftedWindowAttention.for_block(1, DIM, HEADS, WINDOW).double()
    assert (regular.shift, shifted.shift) == ((0, 0), (2, 2))
    assert _influence(shifted, (8, 8), (7, 7), (0, 0)) == 0.0
    assert _influence(shifted, (8, 8), (5, 5), (2, 2)) > 1e-6
    assert _influence(regular, (8, 8), (5, 5), (2, 2)) == 0.0
    # without the mask the wrapped tokens would interact: plain window attention on the rolled map shows it
    plain = WindowAttention(DIM, HEADS, WINDOW).double()
    plain.load_state_dict(shifted.state_dict())
    rolled = lambda t: torch.roll(plain(torch.roll(t, (-2, -2), (1, 2))), (2, 2), (1, 2))
    x = torch.randn(1, 8, 8, DIM, dtype=torch.float64)
    x2 = x.clone()
    x2[0, 7, 7] += 1.0
    with torch.no_grad():
        assert (rolled(x2)[0, 0, 0] - rolled(x)[0, 0, 0]).abs().max() > 1e-6


# ---------------------------------------------------------------------------------------------------------------------
# HAT (FasterViT hierarchical attention)


def test_hat_carriers_are_masked_cell_means() -> None:
    mixer = HierarchicalAttention(DIM, HEADS, window=4, carrier_size=2).double()
    x = torch.randn(2, 6, 5, DIM, dtype=torch.float64)
    carriers, valid = mixer.carriers(x)
    feats = mixer.carrier_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # [B, 6, 5, C]
    assert carriers.shape == (2, 4, 4, DIM) and valid.shape == (4, 4)
    for i in range(4):
        for j in range(4):
            cell = feats[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
            assert bool(valid[i, j]) == (cell.shape[1] * cell.shape[2] > 0)
            if cell.numel():
                torch.testing.assert_close(carriers[:, i, j], cell.mean(dim=(1, 2)), **F64)


def test_hat_mixes_globally_window_does_not() -> None:
    """A token in a far window reaches the output only through the carriers."""
    hat = HierarchicalAttention(DIM, HEADS, window=4, carrier_size=2).double()
    window = WindowAttention(DIM, HEADS, 4).double()
    assert _influence(hat, (12, 12), (11, 11), (0, 0)) > 1e-8
    assert _influence(window, (12, 12), (11, 11), (0, 0)) == 0.0


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Plain softmax attention: ``[B, T, n, d] x [B, S, n, d] -> [B, T, n, d]``."""
    logits = torch.einsum("btnd,bsnd->bnts", q, k) / math.sqrt(q.shape[-1])
    return torch.einsum("bnts,bsnd->btnd", torch.softmax(logits, dim=-1), v)


def hat_reference(m: HierarchicalAttention, x: torch.Tensor) -> torch.Tensor:
    """HAT written with loops over carrier cells and windows, using only real (unpadded) tokens."""
    _, h, w, _ = x.shape
    (kh, kw), cs = m.window, m.carrier_size
    ch, cw = kh // cs, kw // cs
    nh, nw = -(-h // kh), -(-w // kw)
    feats = m.carrier_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    cells = [(i, j) for i in range(nh * cs) for j in range(nw * cs) if i * ch < h and j * cw < w]
    ct = torch.stack([feats[:, i * ch : (i + 1) * ch, j * cw : (j + 1) * cw].mean(dim=(1, 2)) for i, j in cells], 1)
    ct = ct + m.carrier_attn.merge(_attend(*m.carrier_attn.split(m.carrier_norm1(ct))))
    ct = ct + m.carrier_mlp(m.carrier_norm2(ct))
    q, k, v = m.attn.split(x)  # [B, H, W, n, d]
    _, ck, cv = m.attn.split(m.carrier_norm(ct))  # [B, Nc, n, d]
    out = torch.zeros_like(q)
    for wi in range(nh):
        for wj in range(nw):
            ys, xs = slice(wi * kh, (wi + 1) * kh), slice(wj * kw, (wj + 1) * kw)
            own = [idx for idx, (i, j) in enumerate(cells) if i // cs == wi and j // cs == wj]
            qw = q[:, ys, xs]
            keys = torch.cat([ck[:, own], k[:, ys, xs].flatten(1, 2)], dim=1)
            values = torch.cat([cv[:, own], v[:, ys, xs].flatten(1, 2)], dim=1)
            out[:, ys, xs] = _attend(qw.flatten(1, 2), keys, values).view_as(qw)
    return m.attn.merge(out)


@pytest.mark.parametrize("grid", [(8, 8), (6, 9), (3, 5), (13, 4)], ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("window,carrier", [((4, 4), 2), ((6, 4), 2), ((4, 4), 1)], ids=["k4c2", "k6x4c2", "k4c1"])
def test_hat_matches_loop_reference(grid: tuple[int, int], window: tuple[int, int], carrier: int) -> None:
    """Including grids whose padding leaves whole carrier cells empty (those carriers must be dropped)."""
    mixer = HierarchicalAttention(DIM, HEADS, window, carrier_size=carrier).double()
    x = torch.randn(2, *grid, DIM, dtype=torch.float64)
    torch.testing.assert_close(mixer(x), hat_reference(mixer, x), **F64)


def _fastervit_available() -> bool:
    try:
        import fastervit.models.faster_vit  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return False
    return True


@pytest.mark.skipif(
    not _fastervit_available(),
    reason="optional baseline package `fastervit` is not installed (pip install 'atlas-vision[baselines]')",
)
def test_hat_block_matches_fastervit() -> None:
    """One MixerBlock(HAT) equals one FasterViT ``HAT`` block (with its TokenInitializer) under copied weights, with
    FasterViT's position encodings switched off (ours has none) and LayerNorm eps 0 on a pre-normalised input (so
    that carrier initialisation from ``norm1(x)`` and from ``x`` coincide)."""
    from fastervit.models.faster_vit import HAT, TokenInitializer, window_partition, window_reverse

    torch.manual_seed(0)
    dim, heads, k, c, size = 16, 2, 4, 2, 8
    theirs = HAT(dim, heads, mlp_ratio=4.0, qkv_bias=True, sr_ratio=size // k, window_size=k, ct_size=c).double()
    init = TokenInitializer(dim, size, k, ct_size=c).double()
    for module in (theirs.pos_embed, theirs.hat_pos_embed):
        module.forward = lambda t: t
    for module in (theirs.attn.pos_emb_funct, theirs.hat_attn.pos_emb_funct):
        module.forward = lambda t, n: t
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if not name.startswith("norm1."):
                p.normal_(0, 0.3)
        init.pos_embed.weight.normal_(0, 0.3)
    theirs.norm1.eps = 0.0

    mixer = HierarchicalAttention(dim, heads, k, carrier_size=c).double()
    ours = MixerBlock(dim, mixer, 4.0, 0.0).double()
    ours.norm1.load_state_dict(theirs.norm1.state_dict())
    ours.norm1.eps = 0.0
    ours.norm2.load_state_dict(theirs.norm2.state_dict())
    ours.mlp.load_state_dict(theirs.mlp.state_dict())
    mixer.attn.qkv.load_state_dict(theirs.attn.qkv.state_dict())
    mixer.attn.proj.load_state_dict(theirs.attn.proj.state_dict())
    mixer.carrier_norm.load_state_dict(theirs.norm1.state_dict())
    mixer.carrier_norm.eps = 0.0
    mixer.carrier_norm1.load_state_dict(theirs.hat_norm1.state_dict())
    mixer.carrier_norm2.load_state_dict(theirs.hat_norm2.state_dict())
    mixer.carrier_attn.qkv.load_state_dict(theirs.hat_attn.qkv.state_dict())
    mixer.carrier_attn.proj.load_state_dict(theirs.hat_attn.proj.state_dict())
    mixer.carrier_mlp.load_state_dict(theirs.hat_mlp.state_dict())
    mixer.carrier_conv.load_state_dict(init.pos_embed.state_dict())

    x = nn.functional.layer_norm(torch.randn(2, size, size, dim, dtype=torch.float64), (dim,), eps=0.0)
    x_bchw = x.permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        out_w, _ = theirs(window_partition(x_bchw, k), init(x_bchw))
        expected = window_reverse(out_w, k, size, size, 2).permute(0, 2, 3, 1)
        torch.testing.assert_close(ours(x), expected, **tol("external", torch.float64, "fwd"))


# ---------------------------------------------------------------------------------------------------------------------
# dilated attention (LongNet)


def test_geometric_schedule() -> None:
    assert geometric_schedule(1000, 64, 2) == ((64, 128, 256, 512, 1024), (1, 2, 4, 8, 16))
    assert geometric_schedule(50, 64, 2) == ((64,), (1,))
    assert geometric_schedule(64, 64, 4) == ((64,), (1,))
    with pytest.raises(ValueError):
        geometric_schedule(10, 4, 1)


def test_dilated_single_full_segment_is_global_attention() -> None:
    mixer = DilatedAttention(DIM, HEADS, base_segment=64, ratio=2).double()  # 7x9 = 63 tokens: one branch (64, 1)
    x = torch.randn(2, 7, 9, DIM, dtype=torch.float64)
    torch.testing.assert_close(mixer(x), dense_reference(mixer, x, torch.ones(63, 63, dtype=torch.bool)), **F64)


def dense_dilated(q, k, v, segments, rates):
    """Dense reference: per branch and head, mask = same segment & both positions at the head's offset (j mod r);
    outputs combined with softmax-denominator weights exp(lse_b) / sum exp(lse)."""
    _, n, length, d = q.shape
    pos = torch.arange(length)
    logits = q @ k.transpose(-1, -2) / math.sqrt(d)  # [B, n, N, N]
    outs, lses = [], []
    for w, r in zip(segments, rates):
        w = min(w, length)
        seg = pos // w
        offset = (torch.arange(n) % r)[:, None]  # [n, 1]
        kept = ((pos % w) % r)[None, :] == offset  # [n, N]: position kept by head h in this branch
        visible = (seg[:, None] == seg[None, :])[None] & kept[:, None, :] & kept[:, :, None]  # [n, N, N]
        masked = logits.masked_fill(~visible, float("-inf"))
        lse = torch.logsumexp(masked, dim=-1)  # [B, n, N]; -inf where not kept
        out = torch.nan_to_num(torch.softmax(masked, dim=-1)) @ v
        outs.append(out)
        lses.append(lse)
    weights = torch.softmax(torch.stack(lses), dim=0)
    return (torch.stack(outs) * weights[..., None]).sum(0)


@pytest.mark.parametrize(
    "length,segments,rates,heads",
    [
        (37, (4, 8, 16, 64), (1, 2, 4, 8), 4),
        (24, (6, 12, 24), (1, 2, 4), 3),
        (30, (8, 30), (1, 3), 2),
        (5, (2, 9), (1, 4), 2),
    ],
)
def test_dilated_matches_dense_reference(length: int, segments, rates, heads: int) -> None:
    q, k, v = (torch.randn(2, heads, length, 8, dtype=torch.float64, requires_grad=True) for _ in range(3))
    out = dilated_attention(q, k, v, segments, rates)
    expected = dense_dilated(q, k, v, segments, rates)
    torch.testing.assert_close(out, expected, **F64)
    grads = torch.autograd.grad(out.sum(), (q, k, v))
    grads_ref = torch.autograd.grad(expected.sum(), (q, k, v))
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, **F64_GRAD)


def test_dilated_rejects_uncovered_schedule() -> None:
    q = torch.randn(1, 2, 8, 4)
    with pytest.raises(ValueError, match="must be 1"):
        dilated_attention(q, q, q, (4, 8), (2, 4))
    with pytest.raises(ValueError, match="one dilation rate per segment"):
        dilated_attention(q, q, q, (4, 8), (1,))


# ---------------------------------------------------------------------------------------------------------------------
# MambaVision mixer


@pytest.mark.parametrize("chunk", [1, 5, 64])
def test_selective_scan_matches_per_step_loop(chunk: int) -> None:
    b, d, n, length = 2, 3, 4, 23
    u = torch.randn(b, d, length, dtype=torch.float64, requires_grad=True)
    delta = nn.functional.softplus(torch.randn(b, d, length, dtype=torch.float64)).requires_grad_()
    A = (-torch.rand(d, n, dtype=torch.float64) * 3).requires_grad_()
    B, C = (torch.randn(b, n, length, dtype=torch.float64, requires_grad=True) for _ in range(2))
    D = torch.randn(d, dtype=torch.float64, requires_grad=True)
    out = selective_scan(u, delta, A, B, C, D, chunk_size=chunk)
    expected = selective_scan_reference(u, delta, A, B, C, D)
    torch.testing.assert_close(out, expected, **F64)
    grads = torch.autograd.grad(out.sum(), (u, delta, A, B, C, D))
    grads_ref = torch.autograd.grad(expected.sum(), (u, delta, A, B, C, D))
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, **F64_GRAD)


def test_selective_scan_large_steps_do_not_overflow() -> None:
    """Large dt * |A| (strong decay) must not produce inf/nan in the chunked closed form."""
    u = torch.randn(1, 2, 40)
    delta = torch.full((1, 2, 40), 50.0)
    A = -torch.arange(1, 5, dtype=torch.float32).repeat(2, 1)
    B, C = torch.randn(1, 4, 40), torch.randn(1, 4, 40)
    out = selective_scan(u, delta, A, B, C, torch.ones(2), chunk_size=16)
    expected = selective_scan_reference(u, delta, A, B, C, torch.ones(2))
    torch.testing.assert_close(out, expected, **tol("scan", torch.float32, "fwd"))


def test_mamba_is_causal_through_the_scan_only() -> None:
    """The SSM branch is causal in raster order but the convs are not: a token influences the next tokens far away
    (through the scan) while a token far *before* it is untouched by a later perturbation beyond the conv reach."""
    mixer = MambaVisionMixer(DIM, d_conv=3, chunk_size=4).double()
    assert _influence(mixer, (4, 6), (0, 0), (3, 5)) > 1e-8  # first token reaches the last one
    assert _influence(mixer, (4, 6), (3, 5), (0, 0)) == 0.0  # not the other way round


# ---------------------------------------------------------------------------------------------------------------------
# MSA body and the benchmark network


MSA_CASES = [(Composition.STACK, c) for c in Communication] + [
    (Composition.CONV_DOWNSAMPLE, Communication.FULL),
    (Composition.ATLAS, Communication.FULL),
    (Composition.ATLAS, Communication.SINGLE_SCALE),
]


@pytest.mark.parametrize("composition,communication", MSA_CASES, ids=lambda c: c.value)
def test_msa_body_shapes_and_gradients(composition: Composition, communication: Communication) -> None:
    """Every parameter gets a gradient. (Not true by construction for conv_downsample/atlas without top-down or
    bottom-up: a scale dropped at a stage end without a pathway back to the kept scales has dead last updates.)"""
    depths = (2,) if composition is Composition.STACK else (1, 1)
    body = MultiScaleBody(
        DIM,
        HEADS,
        depths,
        composition,
        (4, 4),
        (2, 2),
        PoolOp.MAX,
        communication,
        num_scales=2,
        mlp_ratio=2.0,
        qkv_bias=True,
        drop_path_rates=(0.0, 0.1),
        pos_embed_hidden=8,
    )
    x = torch.randn(3, 11, 6, DIM, requires_grad=True)
    maps = body(x)
    assert all(m.shape[0] == 3 and m.shape[-1] == DIM for m in maps)
    if composition is Composition.STACK:
        expected_scales = 1 if communication is Communication.SINGLE_SCALE else 3  # 11x6 -> 6x3 -> 3x2 (fits 4x4)
        assert [tuple(m.shape[1:3]) for m in maps] == [(11, 6), (6, 3), (3, 2)][:expected_scales]
    sum(m.sum() for m in maps).backward()
    missing = [n for n, p in body.named_parameters() if p.grad is None]
    assert not missing, missing


@pytest.mark.parametrize("kind", [k.value for k in MixerKind])
@pytest.mark.parametrize("size", [(36, 52), (33, 17)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_mixer_net_forward_backward(kind: str, size: tuple[int, int]) -> None:
    net = timm.create_model(
        "mixer_net",
        mixer=kind,
        dim=DIM,
        depth=2,
        num_heads=HEADS,
        patch_size=4,
        window=4,
        num_classes=5,
        drop_path_rate=0.1,
        pos_embed_hidden=8,
        segment_length=8,
    )
    out = net(torch.randn(2, 3, *size))
    assert out.shape == (2, 5)
    out.sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, missing


@pytest.mark.parametrize("kind", [k.value for k in MixerKind])
def test_mixer_net_batch_independence(kind: str) -> None:
    net = MixerNet(
        MixerNetConfig.from_options(
            mixer=kind, dim=DIM, depth=2, num_heads=HEADS, window=4, num_classes=3, pos_embed_hidden=8, segment_length=8
        )
    ).eval()
    x = torch.randn(3, 3, 40, 28)
    with torch.no_grad():
        expected = torch.cat([net(x[i : i + 1]) for i in range(3)])
        torch.testing.assert_close(net(x), expected, **tol("mixer", torch.float32, "fwd"))


@pytest.mark.parametrize("kind", ["swin", "msa"])
def test_mixer_net_grad_checkpointing_same_output(kind: str) -> None:
    net = MixerNet(
        MixerNetConfig.from_options(
            mixer=kind, dim=DIM, depth=2, num_heads=HEADS, window=4, num_classes=3, pos_embed_hidden=8
        )
    ).eval()
    x = torch.randn(2, 3, 40, 28)
    expected = net(x)
    net.set_grad_checkpointing(True)
    torch.testing.assert_close(net(x), expected, **tol("model", torch.float32, "fwd"))


def test_mixer_net_same_width_depth_heads_for_every_mixer() -> None:
    for kind in MixerKind:
        net = timm.create_model(
            "mixer_net", mixer=kind.value, dim=24, depth=3, num_heads=3, num_classes=0, pos_embed_hidden=8
        )
        assert net.num_features == 24
        assert net(torch.randn(1, 3, 32, 32)).shape == (1, 24)
        depth = len(net.body.blocks) if hasattr(net.body, "blocks") else sum(len(s.blocks) for s in net.body.stages)
        assert depth == 3


def test_mixer_net_compositions_and_stage_depths() -> None:
    assert MSAConfig(composition="atlas").resolved_stage_depths(12) == (2, 10)
    assert MSAConfig(composition="conv_downsample").resolved_stage_depths(12) == (3, 3, 3, 3)
    assert MSAConfig(composition="conv_downsample").resolved_stage_depths(5) == (2, 1, 1, 1)
    net = MixerNet(
        MixerNetConfig.from_options(
            mixer="msa",
            dim=DIM,
            depth=4,
            num_heads=HEADS,
            window=4,
            pool_stride=2,
            composition="conv_downsample",
            stage_depths=(2, 2),
            pos_embed_hidden=8,
        )
    )
    assert len(net.body.downsamples) == 1
    assert net(torch.randn(1, 3, 64, 48)).shape == (1, 1000)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"mixer": "nope"}, "mixer='nope' is not valid"),
        ({"dim": 30, "num_heads": 4}, "divisible by num_heads"),
        ({"mixer": "hat", "window": 5, "carrier_size": 2}, "divisible by carrier_size"),
        ({"mixer": "msa", "window": 6, "pool_stride": 4}, "divisible by pool_stride"),
        ({"mixer": "msa", "composition": "atlas", "depth": 4, "stage_depths": (1, 2)}, "must sum to depth"),
        ({"mixer": "window", "stage_depths": (1, 3)}, "only applies to mixer='msa'"),
        ({"mixer": "msa", "communication": "sideways"}, "communication='sideways' is not valid"),
        ({"bogus": 1}, "unknown mixer_net option"),
    ],
)
def test_mixer_net_rejects_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        timm.create_model("mixer_net", **kwargs)


def test_mixer_net_no_weight_decay_reaches_the_optimizer() -> None:
    """Mamba's A_log (2-D, so timm would decay it by default) is declared in ``no_weight_decay`` and ends up in the
    no-decay group of timm's optimizer factory; weight matrices stay decayed."""
    from timm.optim import create_optimizer_v2

    net = MixerNet(MixerNetConfig(mixer="mamba", dim=DIM, depth=1, num_heads=HEADS, num_classes=3))  # mamba defaults
    assert net.no_weight_decay() == {"body.blocks.0.mixer.A_log", "body.blocks.0.mixer.D"}
    optimizer = create_optimizer_v2(net, opt="adamw", lr=1e-3, weight_decay=0.05)
    names = {id(p): n for n, p in net.named_parameters()}
    decay = {names[id(p)]: group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    assert decay["body.blocks.0.mixer.A_log"] == decay["body.blocks.0.mixer.D"] == 0.0
    assert decay["body.blocks.0.mixer.in_proj.weight"] == decay["head.weight"] == 0.05


# ---------------------------------------------------------------------------------------------------------------------
# per-mixer configs

FLAT_OPTIONS = {  # the flat keywords of mixer_net / bench mixers (unchanged by the per-mixer configs)
    "mixer", "dim", "depth", "num_heads", "patch_size", "window", "mlp_ratio", "qkv_bias", "in_chans", "num_classes",
    "drop_path_rate", "pos_embed", "carrier_size", "segment_length", "dilation_ratio", "d_state", "d_conv",
    "scan_chunk", "pool_stride", "pool_op", "communication", "composition", "num_scales", "stage_depths",
    "pos_embed_hidden",
}  # fmt: skip


def test_each_mixer_config_holds_only_its_own_knobs() -> None:
    assert set(MIXER_CONFIGS) == set(MixerKind)
    knobs = {kind.value: set(cls.option_names()) for kind, cls in MIXER_CONFIGS.items()}
    assert knobs == {
        "window": {"window"},
        "swin": {"window"},
        "global": set(),
        "hat": {"window", "carrier_size"},
        "dilated": {"segment_length", "dilation_ratio"},
        "mamba": {"d_state", "d_conv", "scan_chunk"},
        "msa": {"window", "pool_stride", "pool_op", "communication", "composition", "num_scales", "stage_depths",
                "pos_embed_hidden"},
    }  # fmt: skip
    assert set(MixerNetConfig.option_names()) == FLAT_OPTIONS


def test_flat_options_route_to_the_chosen_mixer() -> None:
    cfg = MixerNetConfig.from_options(mixer="hat", dim=24, window=[8, 4], carrier_size=4, pos_embed_hidden=9, d_state=3)
    assert cfg.mixer == HatConfig(window=(8, 4), carrier_size=4) and cfg.kind is MixerKind.HAT and cfg.dim == 24
    msa = MixerNetConfig.from_options(mixer="msa", window=8, pool_stride=2, communication="top_down").mixer
    assert msa == MSAConfig(window=(8, 8), pool_stride=(2, 2), communication=Communication.TOP_DOWN)
    assert MixerNetConfig(mixer="swin").mixer == MixerNetConfig.from_options(mixer="swin").mixer  # a kind = defaults
    with pytest.raises(TypeError, match="mixer must be a mixer config"):
        MixerNetConfig(mixer=3)


@pytest.mark.parametrize("kind", ["hat", "msa"])
def test_flat_and_nested_configs_build_the_same_network(kind: str) -> None:
    options = {"dim": DIM, "depth": 2, "num_heads": HEADS, "window": 4, "pool_stride": 2, "pos_embed_hidden": 8}
    flat = MixerNetConfig.from_options(mixer=kind, **options)
    mixer = HatConfig(window=4) if kind == "hat" else MSAConfig(window=4, pool_stride=2, pos_embed_hidden=8)
    nested = MixerNetConfig(mixer=mixer, dim=DIM, depth=2, num_heads=HEADS)
    assert flat == nested
    torch.manual_seed(0)
    a = MixerNet(flat).eval()
    torch.manual_seed(0)
    b = MixerNet(nested).eval()
    x = torch.randn(1, 3, 24, 20)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), atol=0, rtol=0)
