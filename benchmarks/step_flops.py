"""Floating-point operations of one training step (forward + backward) per model: the arithmetic a CPU cannot skip.

    python benchmarks/step_flops.py --models atlas_base,vit_base_patch16_224,convnext_base --res 1024

Counts with ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and convolutions, as 2 x multiply-adds),
plus CPU attention, which the counter has no formula for (``aten::_scaled_dot_product_flash_attention_for_cpu`` and
its backward count 0 in torch 2.14): those two get the counter's own CUDA SDPA formulas (``sdpa_flop_count``,
``sdpa_backward_flop_count``), so attention is counted the same way on both devices; and a convolution's backward
counts its forward once per gradient (input, weight), since the counter's formula ignores ``groups``. Batch 1, the models as
``benchmarks/bench_core.py models`` builds them (random init), summed logits as the loss. Elementwise work (norms,
activations, copies) is not counted: on a CPU that runs matrix products at a fixed rate, the ratio of two models'
step FLOPs is the speed ratio they would have at equal efficiency.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch.utils import flop_counter

import atlas_vision  # noqa: F401  (registers the Atlas models)
from atlas_vision.bench.models import model_kwargs

aten = torch.ops.aten


def _cpu_sdpa_forward(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    """``_scaled_dot_product_flash_attention_for_cpu(q, k, v, ...)``: QK^T and AV, as for CUDA's flash attention."""
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward(grad_shape, query_shape, key_shape, value_shape, *args, **kwargs) -> int:
    """Its backward ``(grad_out, q, k, v, out, logsumexp, ...)``: the counter's CUDA SDPA backward formula."""
    return flop_counter.sdpa_backward_flop_count(grad_shape, query_shape, key_shape, value_shape)


def _conv_backward(
    grad_shape,
    x_shape,
    w_shape,
    bias,
    stride,
    padding,
    dilation,
    transposed,
    output_padding,
    groups,
    output_mask,
    out_shape=None,
) -> int:
    """``convolution_backward``: the forward's FLOPs once per gradient asked for (input, weight). The counter's own
    formula ignores ``groups`` (a depthwise 7x7 conv's backward counted 129x its forward: ConvNeXt 5.1 TFLOP)."""
    forward = flop_counter.conv_flop_count(x_shape, w_shape, grad_shape, transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


FORMULAS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_forward,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
    aten.convolution_backward: _conv_backward,
}


def step_flops(name: str, res: int) -> tuple[int, int]:
    """``(forward, backward)`` FLOPs of one batch-1 training step of timm model ``name`` at ``res`` x ``res``."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, **model_kwargs(name, (res, res))).train()
    x = torch.randn(1, 3, res, res)
    with flop_counter.FlopCounterMode(display=False, custom_mapping=FORMULAS) as forward:
        loss = model(x).sum()
    with flop_counter.FlopCounterMode(display=False, custom_mapping=FORMULAS) as backward:
        loss.backward()
    return forward.get_total_flops(), backward.get_total_flops()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="atlas_base,vit_base_patch16_224,convnext_base")
    p.add_argument("--res", type=int, default=1024)
    args = p.parse_args()
    rows = [(name, *step_flops(name, args.res)) for name in args.models.split(",")]
    first = rows[0][1] + rows[0][2]
    print(f"| model | forward TFLOP | backward TFLOP | step TFLOP | step vs {rows[0][0]} |")
    print("|---|---|---|---|---|")
    for name, fwd, bwd in rows:
        print(
            f"| `{name}` | {fwd / 1e12:.3f} | {bwd / 1e12:.3f} | {(fwd + bwd) / 1e12:.3f} | {(fwd + bwd) / first:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
