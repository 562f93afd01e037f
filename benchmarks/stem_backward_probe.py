"""Where Atlas-B's CPU training step goes, timed without the profiler, and the conv-backward variants tried against it.

    python benchmarks/stem_backward_probe.py breakdown --px 1024 --threads 2
    python benchmarks/stem_backward_probe.py variants --threads 2

``breakdown``: stem forward + backward and the MSA part (stem output as a leaf) timed separately (medians of 3 after
1 warm-up), then one full step with tensor hooks at every stem conv's output and input, so the gap between "gradient
reaches the output" and "gradient reaches the input" is that conv's backward (``torch.profiler`` attributed about
twice that to ``convolution_backward`` on this VM). ``variants``: micro-benchmarks (median of 5) of the stem's conv
backward on its real shapes: oneDNN's input gradient against the same as a forward conv with flipped, transposed
weights, the 3x3 weight gradient shipped (``conv3x3_weight_gradient``) against the aligned GEMMs it is made of, and
the stride-2 input gradient against a polyphase version (four stride-1 convs), and the Winograd F(2x2, 3x3) passes
(``layers/winograd.py``) with the whole ``Conv3x3`` forward + backward under each algorithm; each variant is checked
against oneDNN in float64 first. Run with ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736``
(what ``run.cpu_allocator keep`` does) so page faults do not blur the times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import timm
import torch
import torch.nn.functional as F

import atlas_vision  # noqa: F401  (registers the Atlas models)
from atlas_vision.layers.conv3x3 import Conv3x3, conv3x3_cpu_algorithm, conv3x3_weight_gradient
from atlas_vision.layers.winograd import (
    transform_weight,
    winograd_conv3x3,
    winograd_conv3x3_input_gradient,
    winograd_conv3x3_weight_gradient,
)


def _median_s(fn: Callable[[], object], repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def breakdown(px: int) -> None:
    model = timm.create_model("atlas_base").train()
    x = torch.randn(1, 3, px, px)
    with torch.no_grad():
        tokens = model.stem(x)  # [B, h, w, C]
    tokens.requires_grad_(True)

    def msa_step() -> None:
        xs, layout = model._scales_from_tokens(tokens)
        for stage in model.stages:
            xs = stage(xs, layout)
        model.forward_head(model.norm(model._readout_tokens(xs))).sum().backward()

    def stem_forward() -> torch.Tensor:
        return model.stem(x).sum()

    print(f"MSA part (stem output as leaf) fwd+bwd: {_median_s(msa_step, 3):.2f} s")
    print(f"stem forward: {_median_s(stem_forward, 3):.2f} s")
    print(f"stem forward+backward: {_median_s(lambda: stem_forward().backward(), 3):.2f} s")

    events: list[tuple[float, str, str]] = []

    def hook(module: torch.nn.Conv2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        name = f"{module.in_channels}->{module.out_channels}/s{module.stride[0]}"
        output.register_hook(lambda g: events.append((time.perf_counter(), "grad at output", name)))
        if inputs[0].requires_grad:
            inputs[0].register_hook(lambda g: events.append((time.perf_counter(), "grad at input", name)))

    handles = [m.register_forward_hook(hook) for m in model.stem.modules() if isinstance(m, torch.nn.Conv2d)]
    model.zero_grad(set_to_none=True)
    loss = model(x).sum()
    start = time.perf_counter()
    loss.backward()
    print(f"one full step's backward: {time.perf_counter() - start:.2f} s; per stem conv:")
    for handle in handles:
        handle.remove()
    reached: dict[str, float] = {}
    for t, what, name in events:
        if what == "grad at output":
            reached[name] = t
        elif name in reached:
            print(f"  {name:16s} backward {t - reached.pop(name):.3f} s")


def _stride2_input_grad_polyphase(g: torch.Tensor, w: torch.Tensor, h: int, wd: int) -> torch.Tensor:
    """Input gradient ``[B, C, h, wd]`` of ``conv2d(x, w, stride=2, padding=1)`` as four stride-1 convs of ``g``."""
    batch, _, ho, wo = g.shape
    gp = F.pad(g, (0, 1, 0, 1))  # one zero row / column after the end
    wt = w.transpose(0, 1)  # [C, K, 3, 3]
    taps = {0: [1], 1: [2, 0]}  # kernel rows (cols) feeding even / odd input rows (cols), at offsets 0, +1
    dx = g.new_empty(batch, w.shape[1], ho, 2, wo, 2)
    for a in (0, 1):
        for b in (0, 1):
            kernel = wt[:, :, taps[a]][:, :, :, taps[b]]  # [C, K, kh, kw]
            dx[:, :, :, a, :, b] = F.conv2d(gp[:, :, : ho + a, : wo + b], kernel)
    return dx.view(batch, -1, 2 * ho, 2 * wo)[:, :, :h, :wd]


def _onednn(g: torch.Tensor, x: torch.Tensor, w: torch.Tensor, stride: int, mask: tuple[bool, bool, bool]):
    return torch.ops.aten.convolution_backward(g, x, w, None, (stride,) * 2, (1, 1), (1, 1), False, (0, 0), 1, mask)


def _conv3x3_variants(c: int, side: int) -> str:
    x, g, w = torch.randn(1, c, side, side), torch.randn(1, c, side, side), torch.randn(c, c, 3, 3) * 0.02
    flipped = w.flip(2, 3).transpose(0, 1)  # input grad of a 3x3 stride-1 conv = forward conv with these weights
    err = _onednn(g.double(), x.double(), w.double(), 1, (True, False, False))[0] - F.conv2d(
        g.double(), flipped.double(), padding=1
    )
    g_flat, x_flat = g.reshape(c, -1), x.reshape(c, -1)  # [C, H*W]
    return (
        f"3x3 {c}ch {side}^2: forward {_median_s(lambda: F.conv2d(x, w, padding=1)):.3f} s; input grad oneDNN "
        f"{_median_s(lambda: _onednn(g, x, w, 1, (True, False, False))):.3f} s, as flipped forward conv "
        f"{_median_s(lambda: F.conv2d(g, flipped, padding=1)):.3f} s (fp64 diff {err.abs().max():.1e}); weight "
        f"grad shipped {_median_s(lambda: conv3x3_weight_gradient(g, x)):.3f} s, oneDNN "
        f"{_median_s(lambda: _onednn(g, x, w, 1, (False, True, False))):.3f} s, 9 aligned GEMMs "
        f"{9 * _median_s(lambda: torch.mm(g_flat, x_flat.t())):.3f} s"
    )


def _winograd_variants(c: int, side: int) -> str:
    x, g, w = torch.randn(1, c, side, side), torch.randn(1, c, side, side), torch.randn(c, c, 3, 3) * 0.02
    xd, gd, wd = x.double(), g.double(), w.double()
    err = max(
        (winograd_conv3x3(xd, transform_weight(wd)) - F.conv2d(xd, wd, padding=1)).abs().max().item(),
        (winograd_conv3x3_input_gradient(gd, wd) - _onednn(gd, xd, wd, 1, (True, False, False))[0]).abs().max().item(),
        (winograd_conv3x3_weight_gradient(gd, xd) - _onednn(gd, xd, wd, 1, (False, True, False))[1]).abs().max().item(),
    )
    conv = Conv3x3(c, c)
    xg = x.clone().requires_grad_(True)

    def module_step(algorithm: str) -> None:
        with conv3x3_cpu_algorithm(algorithm):
            conv(xg).backward(g)

    u = transform_weight(w)
    return (
        f"3x3 {c}ch {side}^2 Winograd F(2x2,3x3): forward {_median_s(lambda: winograd_conv3x3(x, u)):.3f} s, input "
        f"grad {_median_s(lambda: winograd_conv3x3_input_gradient(g, w)):.3f} s, weight grad "
        f"{_median_s(lambda: winograd_conv3x3_weight_gradient(g, x)):.3f} s (fp64 diff to oneDNN {err:.1e}); "
        f"Conv3x3 forward + backward: direct {_median_s(lambda: module_step('direct')):.3f} s, winograd "
        f"{_median_s(lambda: module_step('winograd')):.3f} s"
    )


def _stride2_variants(c: int, k: int, side: int) -> str:
    x, w, g = torch.randn(1, c, side, side), torch.randn(k, c, 3, 3) * 0.05, torch.randn(1, k, side // 2, side // 2)
    err = _onednn(g.double(), x.double(), w.double(), 2, (True, False, False))[0] - _stride2_input_grad_polyphase(
        g.double(), w.double(), side, side
    )
    return (
        f"stride-2 {c}->{k} at {side}^2: input grad oneDNN "
        f"{_median_s(lambda: _onednn(g, x, w, 2, (True, False, False))):.3f} s, polyphase "
        f"{_median_s(lambda: _stride2_input_grad_polyphase(g, w, side, side)):.3f} s "
        f"(fp64 diff {err.abs().max():.1e}); full backward oneDNN "
        f"{_median_s(lambda: _onednn(g, x, w, 2, (True, True, False))):.3f} s"
    )


def variants() -> None:
    for c, side in [(192, 256), (384, 128)]:
        print(_conv3x3_variants(c, side), flush=True)
        print(_winograd_variants(c, side), flush=True)
    for c, k, side in [(64, 192, 512), (192, 384, 256), (384, 768, 128)]:
        print(_stride2_variants(c, k, side), flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["breakdown", "variants"])
    p.add_argument("--px", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.what == "breakdown":
        breakdown(args.px)
    else:
        variants()
    return 0


if __name__ == "__main__":
    sys.exit(main())
