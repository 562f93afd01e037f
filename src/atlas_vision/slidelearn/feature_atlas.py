"""Atlas over a slide's feature grid: a small Atlas whose stem is a 1x1 projection of the grid.

The analogue of prov-gigapath's LongNet slide encoder: the cells of a ``features.zarr`` stage are the tokens of
scale 0, and multi-scale attention gives every cell the context of the whole slide.

* **Stem**: ``GridProjection`` -- a 1x1 projection (a ``Linear`` over channels, features *and* the mask channel, so
  a token knows whether it is tissue) followed by LayerNorm, plus a fixed 2-D sine-cosine embedding of the cell's
  position (as prov-gigapath's slide encoder); one token per grid cell (``patch_size`` 1).
* **Per-slide crop**: each slide is cropped to the bounding box of its tissue cells before the Atlas stages, so its
  output depends neither on the padding added by batching nor on the other slides of the batch (slides whose crops
  have the same size run as one batch). Background cells inside the box stay as tokens (features 0, mask 0).
* Everything else is :class:`~atlas_vision.models.Atlas`: the MSA stages, the readout and the timm contract.

``SlideAtlas`` subclasses ``Atlas`` and replaces its conv stem after construction; it overrides ``_check_input``
because a feature grid may be smaller than the conv stem's minimum image size.
"""

from __future__ import annotations

import torch
from timm.layers import trunc_normal_
from torch import nn

from atlas_vision.models import Atlas, AtlasConfig
from atlas_vision.slidelearn.grid_input import split_grid, tissue_box

POOLS: tuple[str, ...] = ("max", "avg")


def sincos_2d(h: int, w: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding ``[h, w, dim]`` of integer cell coordinates (MAE / prov-gigapath
    style): ``dim / 4`` frequencies ``1 / 10000^(k / (dim / 4))`` each for ``sin``/``cos`` of row and column; zero
    padding when ``dim`` is not a multiple of 4."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / max(quarter, 1))
    rows = torch.arange(h, device=device, dtype=torch.float32)[:, None] * omega  # [h, quarter]
    cols = torch.arange(w, device=device, dtype=torch.float32)[:, None] * omega  # [w, quarter]
    pe = torch.zeros(h, w, dim, device=device, dtype=torch.float32)
    pe[..., 0 * quarter : 1 * quarter] = rows.sin()[:, None, :]
    pe[..., 1 * quarter : 2 * quarter] = rows.cos()[:, None, :]
    pe[..., 2 * quarter : 3 * quarter] = cols.sin()[None, :, :]
    pe[..., 3 * quarter : 4 * quarter] = cols.cos()[None, :, :]
    return pe.to(dtype)


class GridProjection(nn.Module):
    """``[B, C_in, h, w]`` -> tokens ``[B, h, w, embed_dim]``: ``LayerNorm(Linear(x)) + sincos_2d`` per cell.

    The fixed position embedding counts cells from the top-left corner of the (cropped) grid, so tokens know where
    they are on the slide; Atlas's own position embeddings are window-local.
    """

    def __init__(self, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Linear(in_chans, embed_dim)
        self.norm = nn.LayerNorm(embed_dim)
        trunc_normal_(self.proj.weight, std=0.02)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(self.proj(x_bchw.permute(0, 2, 3, 1)))  # [B, h, w, C_in] -> [B, h, w, embed_dim]
        _, h, w, dim = tokens.shape
        return tokens + sincos_2d(h, w, dim, tokens.device, tokens.dtype)


class SlideAtlas(Atlas):
    """``[B, C + 1, H, W]`` (features + mask, see :mod:`~atlas_vision.slidelearn.grid_input`) -> logits.

    Args:
        in_chans: feature channels + 1 (the mask channel).
        num_classes: classes; 0 = pooled features.
        embed_dim, num_heads, depths, window_size, pool_stride, mlp_ratio, pos_embed_hidden, drop_path_rate,
            communication, backend: as in :class:`~atlas_vision.models.AtlasConfig` (window and stride in cells).
    """

    def __init__(
        self,
        in_chans: int,
        num_classes: int,
        *,
        embed_dim: int = 32,
        num_heads: int = 2,
        depths: tuple[int, ...] = (1, 1),
        window_size: int | tuple[int, int] = 4,
        pool_stride: int | tuple[int, int] = 2,
        mlp_ratio: float = 2.0,
        pos_embed_hidden: int = 32,
        drop_path_rate: float = 0.0,
        communication: str = "full",
        backend: str = "auto",
        global_pool: str = "max",
    ):
        if in_chans < 2:
            raise ValueError(f"in_chans must be >= 2 (features + 1 mask channel), got {in_chans}")
        if global_pool not in POOLS:
            raise ValueError(f"global_pool must be one of {', '.join(POOLS)}, got {global_pool!r}")
        config = AtlasConfig(
            embed_dim=embed_dim,
            num_heads=num_heads,
            depths=tuple(depths),
            window_size=window_size,
            pool_stride=pool_stride,
            mlp_ratio=mlp_ratio,
            pos_embed_hidden=pos_embed_hidden,
            drop_path_rate=drop_path_rate,
            communication=communication,
            backend=backend,
            in_chans=in_chans,
            num_classes=num_classes,
            patch_size=4,  # the conv stem built by Atlas (smallest: 4) is replaced below
            stem_hidden=1,
            stem_depth=0,
        )
        super().__init__(config)
        self.global_pool = global_pool
        self.stem = GridProjection(in_chans, embed_dim)
        self.patch_size = 1  # one token per grid cell
        self.feature_info = [
            {
                "num_chs": embed_dim,
                "reduction": config.pool_stride[0] ** config.stage_first_scale(s),
                "module": f"stages.{s}",
            }
            for s in range(config.num_stages)
        ]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Readout tokens ``[B, T, C]`` -> logits: ``max`` (default) or ``avg`` over tokens, LayerNorm, Linear.

        Max pooling is the default because a slide's label often rests on a few cells: the mean over all readout
        tokens dilutes them, and training the demo's order task with it stalled near chance (measured)."""
        pooled = x.amax(dim=1) if self.global_pool == "max" else x.mean(dim=1)
        pooled = self.fc_norm(pooled)
        return pooled if pre_logits else self.head(pooled)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None and global_pool not in POOLS:
            raise ValueError(f"global_pool must be one of {', '.join(POOLS)}, got {global_pool!r}")
        if global_pool is not None:
            self.global_pool = global_pool
        super().reset_classifier(num_classes)

    def _check_input(self, x: torch.Tensor) -> None:
        split_grid(x, self.in_chans)  # shape and channel checks; any grid >= 1x1 is fine

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Crop each slide to its tissue box, run Atlas on same-size crops together, keep the batch order."""
        features, valid = split_grid(x, self.in_chans)  # [B, C, H, W], [B, H, W]
        mask = valid.unsqueeze(1).to(x.dtype)  # [B, 1, H, W]
        x = torch.cat([features * mask, mask], dim=1)  # cells not computed carry no features, whatever they hold
        groups: dict[tuple[int, int], list[tuple[int, tuple[int, int, int, int]]]] = {}
        for b in range(x.shape[0]):
            top, bottom, left, right = box = tissue_box(valid[b])
            groups.setdefault((bottom - top, right - left), []).append((b, box))
        outputs, order = [], []
        for members in groups.values():
            crops = torch.stack([x[b, :, t:bo, le:r] for b, (t, bo, le, r) in members])  # [n, C + 1, h, w]
            outputs.append(super().forward(crops))
            order += [b for b, _ in members]
        out = torch.cat(outputs)  # rows in group order
        inverse = torch.empty(len(order), dtype=torch.long, device=out.device)
        inverse[torch.tensor(order, device=out.device)] = torch.arange(len(order), device=out.device)
        return out[inverse]
