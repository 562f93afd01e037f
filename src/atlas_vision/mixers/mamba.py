"""The MambaVision mixer (Hatamizadeh & Kautz 2024, arXiv 2407.08083) as a token mixer, in plain PyTorch.

The map is flattened in raster order to a sequence; ``in_proj`` (C -> expand*C) is split into two halves:

* **SSM branch**: depthwise conv1d -> SiLU -> selective scan (Mamba's S6: input-dependent ``dt``, ``B``, ``C``;
  diagonal ``A = -exp(A_log)``; skip ``D``);
* **symmetric non-SSM branch**: its own depthwise conv1d -> SiLU (no scan), in place of Mamba's gating;

the two are concatenated and projected back to ``C`` (``out_proj``). Convs are non-causal ("same" padding), as in
MambaVision. The selective scan is :func:`selective_scan`, an exact chunked parallel scan (log-space closed form inside
chunks, a short loop across chunks) instead of mamba-ssm's CUDA kernel; :func:`selective_scan_reference` is the per-step loop it is
tested against.

Differences from the released MambaVision code: ``dt_proj``'s bias is added once (the released code adds it twice:
inside ``dt_proj`` and again as ``delta_bias``); convs have no bias (the released code's ``conv_bias // 2`` evaluates
to ``False`` as well); the mixer runs on the whole raster sequence (MambaVision's layers cut the map into windows
first; with the paper's window sizes and 224 px input those windows are the whole map).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from atlas_vision.mixers._common import check_token_map
from atlas_vision.ops import ceil_div


def selective_scan_reference(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, D: torch.Tensor
) -> torch.Tensor:
    """Selective scan, one step at a time: ``h_t = exp(dt_t A) h_{t-1} + dt_t B_t u_t``, ``y_t = C_t . h_t + D u_t``.

    Args:
        u: ``[b, d, L]`` inputs; delta: ``[b, d, L]`` step sizes (already positive); A: ``[d, n]``;
        B, C: ``[b, n, L]``; D: ``[d]``.

    Returns:
        ``[b, d, L]``.
    """
    b, d, length = u.shape
    h = u.new_zeros(b, d, A.shape[1])
    ys = []
    for t in range(length):
        dt = delta[:, :, t, None]  # [b, d, 1]
        h = torch.exp(dt * A) * h + dt * B[:, None, :, t] * u[:, :, t, None]  # [b, d, n]
        ys.append((h * C[:, None, :, t]).sum(-1))  # [b, d]
    return torch.stack(ys, dim=-1) + D[:, None] * u


# stands in for log(0) in the log-space sums: finite (so logcumsumexp's backward never computes -inf - -inf) and far
# below any real log-magnitude, so exp() of anything built from it is exactly 0
_LOG_ZERO = -1e30


def _signed_log_cumsum(x: torch.Tensor, log_decay: torch.Tensor, dim: int) -> torch.Tensor:
    """``sum_{s <= t} exp(S_t - S_s) x_s`` along ``dim`` for real ``x`` of any sign, in log space.

    Positive and negative parts are accumulated separately with ``logcumsumexp`` (stable for any magnitudes of
    ``S``) and subtracted at the end; every term ``exp(S_t - S_s) |x_s|`` is at most ``|x_s|`` because ``S`` is
    non-increasing, so nothing overflows.
    """
    magnitude = x.abs().clamp_min(torch.finfo(x.dtype).tiny).log()
    positive = torch.where(x > 0, magnitude - log_decay, _LOG_ZERO).logcumsumexp(dim)
    negative = torch.where(x < 0, magnitude - log_decay, _LOG_ZERO).logcumsumexp(dim)
    return torch.exp(log_decay + positive) - torch.exp(log_decay + negative)


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    chunk_size: int = 128,
) -> torch.Tensor:
    """Chunked parallel selective scan; same arguments and result as :func:`selective_scan_reference`.

    The sequence is cut into chunks of ``chunk_size`` steps. Inside every chunk (all chunks at once) the state from a
    zero start is ``h_t = sum_{s <= t} exp(S_t - S_s) dt_s B_s u_s`` with the log-decay ``S_t = sum_{r <= t} dt_r A``
    (computed in log space, :func:`_signed_log_cumsum`); the states entering the chunks are then chained by a short
    sequential loop over chunks (``H_c = exp(S_end) H_{c-1} + h_end``) and added back as ``exp(S_t) H_{c-1}``.
    The log-space form loses ``~eps * |S|`` of relative precision, and ``|S|`` grows with ``dt * |A|`` times the chunk
    length (thousands for strongly decaying channels), so the scan always computes in float64 (relative error
    ~1e-16 * |S|) and returns the input dtype; memory is ``O(b d L n)`` float64 values.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    dtype = u.dtype
    u, delta, A, B, C, D = (t.to(torch.float64) for t in (u, delta, A, B, C, D))
    b, d, length = u.shape
    n = A.shape[1]
    steps = min(chunk_size, length)
    chunks = ceil_div(length, steps)
    pad = chunks * steps - length  # padded steps: no decay (dt = 0) and no input, cut at the end

    def chunked(t: torch.Tensor) -> torch.Tensor:  # [b, d, n, L] -> [b, d, n, c, T] (time last: contiguous scans)
        return nn.functional.pad(t, (0, pad)).view(b, d, n, chunks, steps)

    log_decay = chunked(delta[:, :, None, :] * A[None, :, :, None]).cumsum(dim=-1)  # S per chunk: [b, d, n, c, T]
    inputs = chunked((delta * u)[:, :, None, :] * B[:, None, :, :])  # dt_s u_s B_s: [b, d, n, c, T]
    local = _signed_log_cumsum(inputs, log_decay, dim=-1)  # states from a zero start: [b, d, n, c, T]

    end_decay, end_state = torch.exp(log_decay[..., -1]), local[..., -1]  # per chunk: [b, d, n, c]
    state = u.new_zeros(b, d, n)
    entering = []
    for c in range(chunks):  # chain the chunk states (short loop: L / chunk_size steps)
        entering.append(state)
        state = end_decay[..., c] * state + end_state[..., c]
    h = local + torch.exp(log_decay) * torch.stack(entering, dim=-1)[..., None]  # [b, d, n, c, T]
    h = h.flatten(-2)[..., :length]  # [b, d, n, L]
    y = torch.einsum("bdnl,bnl->bdl", h, C)
    return (y + D[:, None] * u).to(dtype)


class MambaVisionMixer(nn.Module):
    """MambaVision's token mixer: selective-scan SSM branch + symmetric conv branch, concatenated.

    Args:
        dim: channels ``C``.
        d_state: SSM state size ``n`` (8 in MambaVision).
        d_conv: depthwise conv kernel (3 in MambaVision).
        expand: inner width ``expand * C`` (1 in MambaVision); must be even.
        dt_rank: rank of the ``dt`` projection (default ``ceil(C / 16)``).
        chunk_size: steps per chunk of :func:`selective_scan`.
        dt_min, dt_max, dt_init_floor: initial ``dt`` range (log-uniform), as in Mamba.

    Shapes: ``[B, H, W, C]`` -> ``[B, H, W, C]``.

    Example:
        >>> MambaVisionMixer(dim=32)(torch.randn(2, 6, 9, 32)).shape
        torch.Size([2, 6, 9, 32])
    """

    def __init__(
        self,
        dim: int,
        d_state: int = 8,
        d_conv: int = 3,
        expand: int = 1,
        dt_rank: int | None = None,
        chunk_size: int = 128,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
    ):
        super().__init__()
        inner = expand * dim
        if dim < 1 or expand < 1 or inner % 2:
            raise ValueError(f"expand * dim must be a positive even number, got expand={expand}, dim={dim}")
        if d_state < 1 or d_conv < 1 or chunk_size < 1:
            raise ValueError(f"d_state, d_conv and chunk_size must be >= 1, got {d_state}, {d_conv}, {chunk_size}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}")
        self.dim = dim
        self.d_state = d_state
        self.chunk_size = chunk_size
        half = inner // 2
        self.dt_rank = dt_rank if dt_rank is not None else math.ceil(dim / 16)
        self.in_proj = nn.Linear(dim, inner, bias=False)
        self.conv_x = nn.Conv1d(half, half, d_conv, padding="same", groups=half, bias=False)
        self.conv_z = nn.Conv1d(half, half, d_conv, padding="same", groups=half, bias=False)
        self.x_proj = nn.Linear(half, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, half, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(half, 1))
        self.D = nn.Parameter(torch.ones(half))
        self.out_proj = nn.Linear(inner, dim, bias=False)
        self._dt_range = (dt_min, dt_max, dt_init_floor)
        self.reset_dt_parameters()

    def reset_dt_parameters(self) -> None:
        """Mamba's ``dt`` initialisation: ``dt_proj.weight ~ U(+-rank^-0.5)`` and ``softplus(dt_proj.bias)``
        log-uniform in ``[dt_min, dt_max]`` (a network's generic Linear init must call this again afterwards)."""
        dt_min, dt_max, floor = self._dt_range
        with torch.no_grad():
            bound = self.dt_rank**-0.5
            self.dt_proj.weight.uniform_(-bound, bound)
            dt = torch.exp(torch.rand(self.dt_proj.out_features) * (math.log(dt_max) - math.log(dt_min)))
            dt = (dt * dt_min).clamp(min=floor)
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_token_map(x, self.dim, type(self).__name__)
        b, h, w, c = x.shape
        xz = self.in_proj(x.reshape(b, h * w, c)).transpose(1, 2)  # [B, inner, N]
        xs, z = xz.chunk(2, dim=1)  # each [B, inner/2, N]
        xs = F.silu(self.conv_x(xs))
        z = F.silu(self.conv_z(z))
        dt, B, C = self.x_proj(xs.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt)).transpose(1, 2)  # [B, inner/2, N]
        A = -torch.exp(self.A_log)  # [inner/2, n]
        y = selective_scan(xs, delta, A, B.transpose(1, 2), C.transpose(1, 2), self.D, self.chunk_size)
        out = self.out_proj(torch.cat([y, z], dim=1).transpose(1, 2))  # [B, N, C]
        return out.reshape(b, h, w, c)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, d_state={self.d_state}, dt_rank={self.dt_rank}, chunk_size={self.chunk_size}"
