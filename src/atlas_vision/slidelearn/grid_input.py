"""The input format of the slide heads: a padded feature grid with its validity mask as the last channel.

A slide enters a head as one tensor ``[B, C + 1, H, W]``:

* channels ``0 .. C-1``: the feature grid of one stage of ``features.zarr`` (``[C, h, w]`` per slide, written by
  ``atlas-vision slide embed``), placed at the top-left corner and zero-padded to ``H x W``;
* channel ``C`` (the last): the validity mask, ``1`` for a tissue cell whose features were computed, ``0`` for a
  background cell of the slide or a padding cell.

One tensor (rather than a ``(features, mask)`` pair) keeps the heads ordinary timm models that the training
pipeline (DataLoader collation, DDP, checkpoints, ``eval``/``predict``) feeds like images; ``in_chans`` of a head
is therefore ``C + 1``.
"""

from __future__ import annotations

import torch


def split_grid(x: torch.Tensor, in_chans: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, C + 1, H, W]`` -> features ``[B, C, H, W]`` and boolean mask ``[B, H, W]``, with input checks.

    Raises:
        ValueError: not a 4-d tensor, wrong channel count, or an empty grid.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected a feature-grid batch [B, C + 1, H, W] (mask as the last channel), got {shape}")
    if x.shape[1] != in_chans:
        raise ValueError(
            f"expected {in_chans} channels ({in_chans - 1} features + 1 mask), got {x.shape[1]} "
            f"(input shape {tuple(x.shape)}); build the head with in_chans={x.shape[1]}"
        )
    if x.shape[0] < 1 or x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"empty feature-grid batch: shape {tuple(x.shape)}")
    return x[:, :-1], x[:, -1] > 0.5


def pack_grid(features: torch.Tensor, valid: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """One slide's features ``[C, h, w]`` and mask ``[h, w]`` -> ``[C + 1, H, W]`` (top-left, zero padding).

    Args:
        features: the feature grid; cells where ``valid`` is false are set to 0.
        valid: the validity mask (bool or 0/1).
        size: padded ``(H, W)``; ``None`` = ``(h, w)``.
    """
    c, h, w = features.shape
    if valid.shape != (h, w):
        raise ValueError(f"mask shape {tuple(valid.shape)} does not match the feature grid {h}x{w}")
    big_h, big_w = size if size is not None else (h, w)
    if h > big_h or w > big_w:
        raise ValueError(f"feature grid {h}x{w} does not fit the padded size {big_h}x{big_w}")
    out = features.new_zeros(c + 1, big_h, big_w)
    mask = valid.to(features.dtype)
    out[:c, :h, :w] = features * mask
    out[c, :h, :w] = mask
    return out


def tissue_box(valid: torch.Tensor) -> tuple[int, int, int, int]:
    """Bounding box ``(top, bottom, left, right)`` (exclusive ends) of the true cells of ``valid [H, W]``; the
    whole grid when no cell is valid."""
    rows = torch.nonzero(valid.any(dim=1)).flatten()
    cols = torch.nonzero(valid.any(dim=0)).flatten()
    if rows.numel() == 0:
        return 0, valid.shape[0], 0, valid.shape[1]
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
