"""Hierarchical attention (HAT) of FasterViT (Hatamizadeh et al. 2023, arXiv 2306.06189) as a token mixer.

Per call, on a ``[B, H, W, C]`` map cut into ``kh x kw`` windows:

1. **carrier tokens**: a depthwise 3x3 conv (FasterViT's ``TokenInitializer`` position conv) then an average pool of
   each ``(kh/c) x (kw/c)`` cell -> ``c x c`` carrier tokens per window (``c = carrier_size``), i.e. pooled per-window
   summaries;
2. **global carrier attention**: all carriers of the image attend to each other, then a carrier MLP, both pre-norm
   residual (FasterViT's ``hat_attn`` / ``hat_mlp``);
3. **window attention with carriers**: each window's tokens attend to ``[its c*c carriers | its kh*kw tokens]``.

The returned map is the attention output of the window tokens (the caller adds the residual and the MLP, as in
FasterViT's HAT block, where the same norm/attention/MLP run over the concatenation).

Differences from FasterViT's code, all deliberate (the benchmark network is uniform across mixers):

* carriers are re-initialised from the block's input in every block instead of being carried as a second token
  stream through a stage; the information path per block is the same (window -> summary -> global -> window);
* no position encodings inside the mixer (FasterViT adds an MLP position embedding to tokens and carriers and a
  Swin-v2 log-spaced relative bias in attention); the network adds one shared position encoding for every mixer;
* no layer scale, no final carrier "propagation" upsampling (off in FasterViT's released configs as well);
* any grid size: padding is masked (a carrier whose cell is all padding is masked out); the window attention is
  :func:`atlas_vision.ops.windowed_attention` with the carriers as per-window context keys.

With those features disabled, one block matches FasterViT's ``HAT`` numerically (tested against the ``fastervit``
package when it is installed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn

from atlas_vision.mixers._common import QKVProjection, check_token_map
from atlas_vision.ops import Size2D, WindowContext, ceil_div, to_2tuple, windowed_attention
from atlas_vision.ops.windows import to_windows


class HierarchicalAttention(nn.Module):
    """FasterViT's hierarchical attention: window attention plus globally mixed carrier tokens.

    Args:
        dim: channels ``C``.
        num_heads: heads (must divide ``dim``).
        window: window side ``k`` or ``(kh, kw)``; each side must be divisible by ``carrier_size``.
        carrier_size: carriers per window side ``c`` (FasterViT's ``ct_size``; 2 in FasterViT-4).
        mlp_ratio: hidden width of the carrier MLP.
        qkv_bias: bias on the q/k/v projections.
        drop_path: stochastic depth of the carrier residual branches.

    Shapes: ``[B, H, W, C]`` -> ``[B, H, W, C]`` for any ``H, W >= 1``.

    Example:
        >>> mixer = HierarchicalAttention(dim=32, num_heads=4, window=8, carrier_size=2)
        >>> mixer(torch.randn(2, 20, 13, 32)).shape
        torch.Size([2, 20, 13, 32])
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window: int | Size2D,
        carrier_size: int = 2,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
    ):
        super().__init__()
        self.dim = dim
        self.window = to_2tuple(window, "window")
        if carrier_size < 1 or any(k < 1 or k % carrier_size for k in self.window):
            raise ValueError(
                f"window {self.window} must be positive and divisible by carrier_size={carrier_size} on each side"
            )
        self.carrier_size = carrier_size
        self.cell: Size2D = (self.window[0] // carrier_size, self.window[1] // carrier_size)
        self.carrier_conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.carrier_norm1 = nn.LayerNorm(dim)
        self.carrier_attn = QKVProjection(dim, num_heads, qkv_bias)
        self.carrier_norm2 = nn.LayerNorm(dim)
        self.carrier_mlp = Mlp(dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)
        self.carrier_drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.carrier_norm = nn.LayerNorm(dim)  # FasterViT's norm1, applied to the carriers of the concatenation
        self.attn = QKVProjection(dim, num_heads, qkv_bias)

    def carriers(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Initial carrier tokens: masked average of ``dwconv(x)`` over each cell.

        Args:
            x: ``[B, H, W, C]``.

        Returns:
            ``(carriers [B, nh*c, nw*c, C], valid [nh*c, nw*c] bool)``; a carrier is invalid when its cell lies
            entirely in the padding.
        """
        b, h, w, c = x.shape
        kh, kw = self.window
        nh, nw = ceil_div(h, kh), ceil_div(w, kw)
        ch, cw = self.cell
        feats = self.carrier_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # [B, H, W, C]
        feats = F.pad(feats, (0, 0, 0, nw * kw - w, 0, nh * kh - h))  # [B, Ph, Pw, C]
        valid = (torch.arange(nh * kh, device=x.device) < h)[:, None] & (torch.arange(nw * kw, device=x.device) < w)
        hc, wc = nh * self.carrier_size, nw * self.carrier_size
        sums = feats.view(b, hc, ch, wc, cw, c).sum(dim=(2, 4))  # [B, Hc, Wc, C]
        counts = valid.view(hc, ch, wc, cw).sum(dim=(1, 3))  # [Hc, Wc]
        return sums / counts.clamp(min=1)[..., None].to(sums.dtype), counts > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_token_map(x, self.dim, type(self).__name__)
        _, h, w, _ = x.shape
        kh, kw = self.window
        num_windows = (ceil_div(h, kh), ceil_div(w, kw))

        # 1-2. carriers and their global attention + MLP (pre-norm residual)
        ct, ct_valid = self.carriers(x)  # [B, Hc, Wc, C], [Hc, Wc]
        hc, wc = ct.shape[1], ct.shape[2]
        q, k, v = (t.flatten(1, 2).transpose(1, 2) for t in self.carrier_attn.split(self.carrier_norm1(ct)))
        mask = None if bool(ct_valid.all()) else ct_valid.flatten()[None, None, None, :]  # [1, 1, 1, Nc]
        glob = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, n, Nc, d]
        ct = ct + self.carrier_drop_path(self.carrier_attn.merge(glob.transpose(1, 2).unflatten(1, (hc, wc))))
        ct = ct + self.carrier_drop_path(self.carrier_mlp(self.carrier_norm2(ct)))

        # 3. window attention over [carriers of the window | window tokens]
        q, k, v = self.attn.split(x)  # each [B, H, W, n, d]
        ck, cv = self.attn.keys_values(self.carrier_norm(ct))  # each [B, Hc, Wc, n, d]; carriers are never queries
        carrier_window = (self.carrier_size, self.carrier_size)
        valid = None
        if not bool(ct_valid.all()):  # carriers whose cell is all padding: [Hc, Wc] -> [M, c*c] in window order
            c = self.carrier_size
            valid = ct_valid.view(num_windows[0], c, num_windows[1], c).permute(0, 2, 1, 3).reshape(-1, c * c)
        context = WindowContext(
            keys=to_windows(ck, num_windows, carrier_window),  # [B, M, n, c*c, d]
            values=to_windows(cv, num_windows, carrier_window),
            valid=valid,
        )
        return self.attn.merge(windowed_attention(q, k, v, self.window, context=context))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window={self.window}, carrier_size={self.carrier_size}"
