"""Exact large-image mode: the conv stem tile by tile with halos sized to its receptive field, then the MSA stages
over the whole token grid in one pass (``Atlas.forward_from_stem``) - so the result equals a direct forward of the
whole image, at sizes whose stem activations would not fit in memory.

The receptive field is computed from the stem's modules (no numbers hard-coded): walking its ``Conv2d`` and pooling
layers in registration order with the recurrence ``left += pad * J``, ``right += (dil * (k - 1) - pad) * J``,
``J *= stride`` gives, for output token ``i``, the input pixels ``[i * P - left, i * P + right]`` it can depend on.
Treating all layers as one chain is exact for a plain stack and an upper bound for residual blocks (the skip path
sees less), which is what a halo needs. Tiles start on multiples of the total stride ``P`` so every intermediate
grid lines up with the full image's; the halo (``max(left, right)`` rounded up to ``P``) is read around each tile
and cropped away afterwards; at the image border the tile ends where the image ends, so the convolutions' zero
padding is the same as in the direct forward.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from atlas_vision.slide.embed import EmbedTimings
from atlas_vision.slide.errors import SlideError


@dataclass(frozen=True)
class StemGeometry:
    stride: int  # input px per token (P)
    left: int  # input px before i * P that token i can see
    right: int  # input px after i * P

    @property
    def halo(self) -> int:
        """Context read around each tile: ``max(left, right)`` rounded up to a multiple of ``stride``."""
        return math.ceil(max(self.left, self.right) / self.stride) * self.stride


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def stem_geometry(stem: nn.Module) -> StemGeometry:
    """Receptive field of a conv stem from its ``Conv2d`` / ``MaxPool2d`` / ``AvgPool2d`` layers (see module doc)."""
    jump, left, right = [1, 1], [0, 0], [0, 0]
    for module in stem.modules():
        if isinstance(module, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
            if isinstance(getattr(module, "padding", 0), str):
                raise SlideError(f"stem layer {module} uses string padding; exact mode needs explicit padding")
            k, s, p = _pair(module.kernel_size), _pair(module.stride), _pair(module.padding)
            d = _pair(getattr(module, "dilation", 1))
            for a in range(2):
                left[a] += p[a] * jump[a]
                right[a] += (d[a] * (k[a] - 1) - p[a]) * jump[a]
                jump[a] *= s[a]
        elif isinstance(module, nn.Conv1d | nn.Conv3d | nn.Unfold | nn.Upsample | nn.AdaptiveAvgPool2d):
            raise SlideError(f"stem layer {type(module).__name__} is not supported by exact mode")
    if jump[0] != jump[1]:
        raise SlideError(f"stem strides differ between height and width ({jump}); exact mode needs a square stride")
    return StemGeometry(jump[0], max(left), max(right))


def check_exact_model(sm) -> None:
    if not hasattr(sm.model, "forward_from_stem") or not hasattr(sm.model, "stem"):
        raise SlideError(f"--exact needs an Atlas model (with stem + forward_from_stem); {sm.name!r} has none")


@torch.inference_mode()
def tiled_stem(
    stem: nn.Module,
    read,
    to_input,
    image_hw: tuple[int, int],
    tile_px: int,
    geometry: StemGeometry | None = None,
    autocast=None,
) -> torch.Tensor:
    """The stem's output ``[1, ceil(H / P), ceil(W / P), C]`` for an image read piecewise.

    Args:
        stem: image ``[1, 3, h, w]`` -> tokens ``[1, h / P, w / P, C]`` (the Atlas ``ConvStem``).
        read: ``read(x, y, width, height) -> [height, width, 3]`` uint8 pixels inside the image.
        to_input: uint8 ``[1, h, w, 3]`` -> the normalised model input ``[1, 3, h, w]``.
        tile_px: tile side in px (rounded down to a multiple of ``P``; the halo comes on top).
    """
    geometry = geometry or stem_geometry(stem)
    p, halo = geometry.stride, geometry.halo
    h, w = image_hw
    tt = max(1, tile_px // p)  # tokens per tile side
    gh, gw = math.ceil(h / p), math.ceil(w / p)
    out: torch.Tensor | None = None
    for ty0 in range(0, gh, tt):
        for tx0 in range(0, gw, tt):
            ty1, tx1 = min(gh, ty0 + tt), min(gw, tx0 + tt)
            py0, px0 = max(0, ty0 * p - halo), max(0, tx0 * p - halo)  # multiples of P
            py1, px1 = min(h, ty1 * p + halo), min(w, tx1 * p + halo)
            x = to_input(read(px0, py0, px1 - px0, py1 - py0)[None])
            if autocast is not None:
                with autocast():
                    tokens = stem(x)
            else:
                tokens = stem(x)
            oy, ox = (ty0 * p - py0) // p, (tx0 * p - px0) // p
            if out is None:
                out = torch.empty(1, gh, gw, tokens.shape[-1], dtype=tokens.dtype, device=tokens.device)
            out[:, ty0:ty1, tx0:tx1] = tokens[:, oy : oy + ty1 - ty0, ox : ox + tx1 - tx0]
    assert out is not None
    return out


@torch.inference_mode()
def exact_forward(sm, read, image_hw: tuple[int, int], tile_px: int):
    """Exact per-stage maps ``[C_s, H / r_s, W / r_s]``, pooled embedding ``[D]`` and probabilities of one image."""
    check_exact_model(sm)
    model = sm.model
    tokens = tiled_stem(model.stem, read, sm.to_input, image_hw, tile_px, autocast=sm.autocast)  # [1, gh, gw, C]
    with sm.autocast():
        final, maps = model.forward_from_stem(tokens.permute(0, 3, 1, 2))
        pooled = model.forward_head(final, pre_logits=True)
        probs = model.forward_head(final).float().softmax(dim=-1) if sm.num_classes else None
    del tokens
    return (
        [m[0].float().cpu().numpy() for m in maps],
        pooled[0].float().cpu().numpy(),
        None if probs is None else probs[0].cpu().numpy(),
    )


def embed_exact(view, grid, todo: list[int], sm, store, progress, *, stem_tile: int = 2048) -> EmbedTimings:
    """Exact mode in a slide run: the whole image at the working resolution is region 0 of a 1-region grid."""
    timings = EmbedTimings()
    start = time.perf_counter()
    if 0 in todo:
        w, h = view.size
        t0 = time.perf_counter()
        maps, embedding, probs = exact_forward(sm, view.read, (h, w), stem_tile)
        t1 = time.perf_counter()
        for m, stride in zip(maps, sm.strides):
            if tuple(m.shape[1:]) != grid.stage_shape(stride):
                raise SlideError(f"exact forward gave a {m.shape[1:]} map, expected {grid.stage_shape(stride)}")
        store.write_region(grid.region(0), maps, embedding, probs)
        progress.mark_done(0)
        timings.compute_s, timings.write_s, timings.regions = t1 - t0, time.perf_counter() - t1, 1
    timings.total_s = time.perf_counter() - start
    return timings
