"""Winograd F(2x2, 3x3): a 3x3, stride-1, padding-1 convolution with 2.25x fewer multiplications (CPU fast path).

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016). The output is cut into 2x2 tiles; tile
``(i, j)`` reads the 4x4 input patch at padded rows ``2i .. 2i+3`` and columns ``2j .. 2j+3``. With ``d`` that patch
and ``g`` one 3x3 filter, the tile is ``A^T [(G g G^T) * (B^T d B)] A`` (``*`` elementwise, 4x4). Over channels the
elementwise product becomes 16 independent matrix products, one per position of the 4x4 transform::

    V[k] = (B^T d B)[k]         [16, C, N]   N = B * tiles     input tiles, transformed
    U[k] = (G g G^T)[k]         [16, K, C]                     weights, transformed
    M[k] = U[k] @ V[k]          [16, K, N]                     16 GEMMs of 2*K*C*N flops: 16/36 of the direct conv
    y    = A^T M A              [B, K, 2 * tiles_h, 2 * tiles_w]

The same algebra gives both gradients. The input gradient of a padding-1 3x3 convolution is the padding-1 3x3
convolution of the output gradient with the flipped, transposed filter, so it is this forward again. The weight
gradient is ``G^T dU G`` with ``dU[k] = dM[k] @ V[k]^T`` and ``dM = A dY A^T`` (dY: each 2x2 output-gradient tile).
A step thus runs three sets of 16 GEMMs, each 4/9 of the direct convolution's arithmetic; the transforms are
elementwise (additions only, and halving in ``G``) and cost a few percent of the time.

Why: on the 2-core CPUs this project runs on, a training step of ``atlas_base`` at 1024 px spends about three quarters
of its arithmetic in the stem's 3x3 convolutions, which oneDNN and the direct GEMMs already run at the machine's GEMM
rate (``docs/benchmarks.md`` section 8). Only less arithmetic makes them faster.

Accuracy: the coefficients are 0, +-1 and +-1/2, so F(2x2, 3x3) is the best-conditioned Winograd variant; in fp32
its error against a float64 convolution was smaller than oneDNN's direct algorithm's on the stem's shapes (2.8e-6
against 8.4e-6 for 192 channels at 256x256, values of size ~4.5; ``tests/test_winograd.py`` bounds it).

Memory: the tiles are transformed in bands of tile rows whose transformed input stays under ``BAND_BYTES``, so the
extra memory is a few tens of MiB whatever the image size (a whole transformed map is 4x the input); the padding is
added band by band too. Beyond that, an output whose height or width is odd is computed whole tiles wide and copied
once to its size. The weight gradient transforms the input again rather than keeping the forward's ``V`` (4x the
input, for every conv, until backward).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

BAND_BYTES = 16 * 2**20
"""Target size of one band's transformed input ``V`` (its ``M`` is the same size for as many output channels)."""

_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))  # [4, 3]


def tile_counts(height: int, width: int) -> tuple[int, int]:
    """Number of 2x2 output tiles down and across an ``height x width`` output."""
    return (height + 1) // 2, (width + 1) // 2


def transform_weight(weight_kc33: torch.Tensor) -> torch.Tensor:
    """``U = G g G^T`` for every filter: ``[K, C, 3, 3]`` -> ``[16, K, C]`` (contiguous, one matrix per position)."""
    g = weight_kc33.new_tensor(_G)  # [4, 3]
    u = torch.einsum("ai,kcij,bj->abkc", g, weight_kc33, g)  # [4, 4, K, C]
    return u.reshape(16, *weight_kc33.shape[:2]).contiguous()


def weight_from_transformed(grad_u: torch.Tensor) -> torch.Tensor:
    """The weight gradient ``G^T dU G``: ``[16, K, C]`` -> ``[K, C, 3, 3]``."""
    g = grad_u.new_tensor(_G)  # [4, 3]
    return torch.einsum("ai,abkc,bj->kcij", g, grad_u.unflatten(0, (4, 4)), g).contiguous()


def _band_rows(tiles_h: int, bytes_per_tile_row: int) -> int:
    return max(1, min(tiles_h, BAND_BYTES // max(1, bytes_per_tile_row)))


def _transform_input_band(xp_band: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """``B^T d B`` of every 4x4 patch: padded band ``[B, C, 2*rows + 2, 2*cols + 2]`` -> ``V`` ``[16, C, B*rows*cols]``.

    Separable: first the four row combinations of ``B^T`` over the patch rows (strided views, step 2), then the same
    four over the columns, each written straight into its slice of ``V``.
    """
    batch, channels = xp_band.shape[:2]
    v = xp_band.new_empty(16, channels, batch, rows, cols)  # [16, C, B, rows, cols]
    r = [xp_band[:, :, m : m + 2 * rows : 2] for m in range(4)]  # patch row m of every tile row: [B, C, rows, Wp]
    by_rows = (r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3])  # B^T over rows, each [B, C, rows, Wp]
    for a, t in enumerate(by_rows):
        c = [t[..., m : m + 2 * cols : 2] for m in range(4)]  # patch column m of every tile: [B, C, rows, cols]
        out = [v[4 * a + b].transpose(0, 1) for b in range(4)]  # V's slices seen as [B, C, rows, cols]
        torch.sub(c[0], c[2], out=out[0])
        torch.add(c[1], c[2], out=out[1])
        torch.sub(c[2], c[1], out=out[2])
        torch.sub(c[1], c[3], out=out[3])
    return v.view(16, channels, batch * rows * cols)


def _transform_output_band(m: torch.Tensor, y_band: torch.Tensor) -> None:
    """``A^T M A`` of every tile, written into ``y_band`` ``[B, K, 2*rows, 2*cols]``; ``m`` is ``[16, K, B*rows*cols]``."""
    batch, out_channels, two_rows, two_cols = y_band.shape
    m = m.view(4, 4, out_channels, batch, two_rows // 2, two_cols // 2)  # [a, b, K, B, rows, cols]
    tiles = y_band.unflatten(3, (two_cols // 2, 2)).unflatten(2, (two_rows // 2, 2))  # [B, K, rows, 2, cols, 2]
    by_rows = (m[0] + m[1] + m[2], m[1] - m[2] - m[3])  # A^T over rows: each [b, K, B, rows, cols]
    for p, s in enumerate(by_rows):
        torch.add(s[0] + s[1], s[2], out=tiles[:, :, :, p, :, 0].transpose(0, 1))  # [K, B, rows, cols] views
        torch.sub(s[1] - s[2], s[3], out=tiles[:, :, :, p, :, 1].transpose(0, 1))


def _transform_grad_band(grad_band: torch.Tensor) -> torch.Tensor:
    """``A dY A^T`` of every 2x2 tile: ``[B, K, 2*rows, 2*cols]`` -> ``dM`` ``[16, K, B*rows*cols]``."""
    batch, out_channels, two_rows, two_cols = grad_band.shape
    rows, cols = two_rows // 2, two_cols // 2
    dm = grad_band.new_empty(16, out_channels, batch, rows, cols)
    y0, y1 = grad_band[:, :, 0::2], grad_band[:, :, 1::2]  # tile row 0 / 1: [B, K, rows, 2*cols]
    for a, t in enumerate((y0, y0 + y1, y0 - y1, -y1)):  # A over rows
        c0, c1 = t[..., 0::2], t[..., 1::2]  # [B, K, rows, cols]
        out = [dm[4 * a + b].transpose(0, 1) for b in range(4)]
        out[0].copy_(c0)
        torch.add(c0, c1, out=out[1])
        torch.sub(c0, c1, out=out[2])
        torch.neg(c1, out=out[3])
    return dm.view(16, out_channels, batch * rows * cols)


def _input_band(x_bchw: torch.Tensor, i0: int, i1: int) -> torch.Tensor:
    """Tile rows ``i0 .. i1 - 1`` of the zero-padded input: ``[B, C, 2*(i1 - i0) + 2, 2*tiles_w + 2]``.

    Padded row ``r`` is input row ``r - 1``; one padding column on the left and up to a whole number of tiles on the
    right. Padded band by band, so no padded copy of the whole input is made.
    """
    height, width = x_bchw.shape[2:]
    tiles_w = tile_counts(height, width)[1]
    first, stop = 2 * i0 - 1, 2 * i1 + 1  # input rows the band reads, before clipping to the image
    rows = x_bchw[:, :, max(first, 0) : min(stop, height)]
    return F.pad(rows, (1, 2 * tiles_w + 1 - width, max(0, -first), stop - min(stop, height)))


def _grad_band(grad_bkhw: torch.Tensor, i0: int, i1: int) -> torch.Tensor:
    """Tile rows ``i0 .. i1 - 1`` of the output gradient, zeros beyond ``H x W``: ``[B, K, 2*(i1 - i0), 2*tiles_w]``."""
    height, width = grad_bkhw.shape[2:]
    tiles_w = tile_counts(height, width)[1]
    stop = 2 * i1
    rows = grad_bkhw[:, :, 2 * i0 : min(stop, height)]
    return F.pad(rows, (0, 2 * tiles_w - width, 0, stop - min(stop, height)))


def winograd_conv3x3(x_bchw: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``conv2d(x, w, bias, stride=1, padding=1)`` for ``u = transform_weight(w)``: ``[B, C, H, W]`` -> ``[B, K, H, W]``."""
    batch, channels, height, width = x_bchw.shape
    out_channels = u.shape[1]
    tiles_h, tiles_w = tile_counts(height, width)
    y = x_bchw.new_empty(batch, out_channels, 2 * tiles_h, 2 * tiles_w)
    step = _band_rows(tiles_h, 16 * channels * batch * tiles_w * x_bchw.element_size())
    for i0 in range(0, tiles_h, step):
        i1 = min(tiles_h, i0 + step)
        v = _transform_input_band(_input_band(x_bchw, i0, i1), i1 - i0, tiles_w)  # [16, C, N]
        _transform_output_band(torch.bmm(u, v), y[:, :, 2 * i0 : 2 * i1])  # [16, K, C] @ [16, C, N]
    if bias is not None:
        y += bias.view(out_channels, 1, 1)
    if 2 * tiles_h != height or 2 * tiles_w != width:
        y = y[:, :, :height, :width].contiguous()
    return y


def winograd_conv3x3_input_gradient(grad_bkhw: torch.Tensor, weight_kc33: torch.Tensor) -> torch.Tensor:
    """Input gradient ``[B, C, H, W]``: the convolution of ``grad`` with the flipped, transposed filter."""
    return winograd_conv3x3(grad_bkhw, transform_weight(weight_kc33.transpose(0, 1).flip(2, 3)))


def winograd_conv3x3_weight_gradient(grad_bkhw: torch.Tensor, x_bchw: torch.Tensor) -> torch.Tensor:
    """Weight gradient ``[K, C, 3, 3]`` of ``conv2d(x, w, stride=1, padding=1)`` for output gradient ``grad``."""
    batch, channels, height, width = x_bchw.shape
    out_channels = grad_bkhw.shape[1]
    tiles_h, tiles_w = tile_counts(height, width)
    grad_u = x_bchw.new_zeros(16, out_channels, channels)
    step = _band_rows(tiles_h, 16 * max(channels, out_channels) * batch * tiles_w * x_bchw.element_size())
    for i0 in range(0, tiles_h, step):
        i1 = min(tiles_h, i0 + step)
        v = _transform_input_band(_input_band(x_bchw, i0, i1), i1 - i0, tiles_w)  # [16, C, N]
        # the output positions beyond H x W that whole tiles cover have zero gradient
        dm = _transform_grad_band(_grad_band(grad_bkhw, i0, i1))  # [16, K, N]
        grad_u.baddbmm_(dm, v.transpose(1, 2))  # += [16, K, N] @ [16, N, C]
    return weight_from_transformed(grad_u)
