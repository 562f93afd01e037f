"""Atlas-B's conv stem, forward + backward on CPU, in the layouts issue 11 part 4 compared (docs/benchmarks.md §8).

    python benchmarks/stem_variants.py --px 1024 --threads 2 --rounds 3

Variants, run interleaved (``--rounds`` times each, in turn) on the same weights and image:

* ``permuted`` - the stem as it was: timm's ``LayerNorm2d`` (channels-last strided output and input gradient), the
  ``permute`` to ``[B, h, w, C]`` without ``contiguous_gradient``, oneDNN's weight gradient;
* ``contiguous`` - a LayerNorm2d that transposes and copies back (stop 20's ``ContiguousLayerNorm2d``) +
  ``contiguous_gradient`` (NCHW-contiguous tensors reach every conv), oneDNN's weight gradient;
* ``conv3x3`` - ``contiguous`` + ``Conv3x3``'s nine-GEMM weight gradient in the residual blocks;
* ``shipped`` - ``conv3x3`` with today's ``ContiguousLayerNorm2d``, which normalises without transposing
  (``channel_layer_norm``): what ``ConvStem`` is.

Only module classes are swapped (``__class__``), so all three compute the same values. Prints one CSV row per round:
variant, forward s, backward s. The loss is ``(tokens * r).sum()`` with a fixed random ``r`` (a dense gradient, as a
real head gives).
"""

from __future__ import annotations

import argparse
import time

import timm
import torch
from timm.layers import LayerNorm2d
from torch import nn

import atlas_vision  # noqa: F401  (registers the Atlas models)
from atlas_vision.layers.contiguous import ContiguousLayerNorm2d, contiguous_gradient
from atlas_vision.layers.conv3x3 import Conv3x3
from atlas_vision.layers.stem import ConvStem

VARIANTS = ("permuted", "contiguous", "conv3x3", "shipped")


class TransposingLayerNorm2d(LayerNorm2d):
    """timm's permute -> layer_norm -> permute, made contiguous (``ContiguousLayerNorm2d`` as of stop 20)."""

    def forward(self, x_bchw: torch.Tensor) -> torch.Tensor:
        return super().forward(contiguous_gradient(x_bchw)).contiguous()


_LAYER_NORM = {
    "permuted": LayerNorm2d,
    "contiguous": TransposingLayerNorm2d,
    "conv3x3": TransposingLayerNorm2d,
    "shipped": ContiguousLayerNorm2d,
}


def _set_variant(stem: ConvStem, variant: str) -> None:
    for module in stem.modules():
        if isinstance(module, LayerNorm2d):
            module.__class__ = _LAYER_NORM[variant]
        elif isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3) and module.stride == (1, 1):
            module.__class__ = Conv3x3 if variant in ("conv3x3", "shipped") else nn.Conv2d


def _step(stem: ConvStem, x: torch.Tensor, r: torch.Tensor, variant: str) -> tuple[float, float]:
    start = time.perf_counter()
    if variant == "permuted":
        tokens = stem.stages(stem.conv0(x)).permute(0, 2, 3, 1)  # the old forward, no contiguous_gradient
    else:
        tokens = stem(x)  # [B, h, w, C]
    forward = time.perf_counter() - start
    (tokens * r).sum().backward()
    stem.zero_grad(set_to_none=True)
    return forward, time.perf_counter() - start - forward


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="atlas_base")
    p.add_argument("--px", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variants", default=",".join(VARIANTS))
    args = p.parse_args()
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        p.error(f"unknown --variants {unknown}; valid: {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    stem = timm.create_model(args.model).stem.train()
    x = torch.randn(1, 3, args.px, args.px)
    with torch.no_grad():
        r = torch.randn_like(stem(x))
    print(f"# {args.model} stem, {args.px} px, batch 1, fp32, {args.threads} thread(s), torch {torch.__version__}")
    print("variant,round,forward_s,backward_s")
    _step(stem, x, r, variants[0])  # warm-up
    for round_ in range(args.rounds):
        for variant in variants:
            _set_variant(stem, variant)
            forward, backward = _step(stem, x, r, variant)
            print(f"{variant},{round_},{forward:.2f},{backward:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
