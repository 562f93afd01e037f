"""Where a CPU training step of a backbone spends its time (issue 11, part 4): ``torch.profiler`` over one step.

    python benchmarks/profile_train_step.py --model atlas_base --px 1024 --threads 2 [--channels-last] [--bf16]

Builds the timm model (``import atlas_vision`` registers Atlas), runs ``--warmup`` untimed steps of forward + summed
logits backward on one random ``[batch, 3, px, px]`` image, then profiles one step and prints: the step time, the
share of forward+backward time spent inside ``stem`` (for Atlas; measured with ``record_function`` around the stem
forward and the autograd ops it created), the time in ``aten::copy_`` (layout conversions and dtype casts), and the top
ops by self CPU time. ``--bf16``: the forward under ``torch.autocast("cpu", torch.bfloat16)``.
"""

from __future__ import annotations

import argparse
import time

import timm
import torch
from torch.profiler import ProfilerActivity, profile, record_function

import atlas_vision  # noqa: F401  (registers the Atlas models)


def _stem_forward_timer(model: torch.nn.Module) -> list[float]:
    """Wrap ``model.stem.forward`` (if any) so each call's forward wall time is appended to the returned list."""
    times: list[float] = []
    stem = getattr(model, "stem", None)
    if stem is None:
        return times
    forward = stem.forward

    def timed(x: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        with record_function("stem_forward"):
            out = forward(x)
        times.append(time.perf_counter() - start)
        return out

    stem.forward = timed
    return times


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="atlas_base")
    p.add_argument("--px", type=int, default=1024)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--channels-last", action="store_true", help="model and input in channels-last memory format")
    p.add_argument("--bf16", action="store_true", help="forward under torch.autocast('cpu', torch.bfloat16)")
    p.add_argument("--rows", type=int, default=15, help="top ops to print")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    kwargs = {"dynamic_img_size": True} if args.model.startswith("vit_") else {}
    model = timm.create_model(args.model, num_classes=100, **kwargs).train()
    x = torch.randn(args.batch, 3, args.px, args.px)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    stem_times = _stem_forward_timer(model)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(x)
        logits.float().sum().backward()
        model.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    stem_times.clear()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        step()
        total = time.perf_counter() - start
    ops = prof.key_averages()
    conv_bwd = sum(e.self_cpu_time_total for e in ops if e.key == "aten::convolution_backward") / 1e6
    conv_fwd = sum(e.self_cpu_time_total for e in ops if e.key in ("aten::mkldnn_convolution", "aten::_convolution"))
    copies = sum(e.self_cpu_time_total for e in ops if e.key == "aten::copy_") / 1e6
    print(
        f"{args.model} {args.px}px batch {args.batch}, {args.threads} thread(s), "
        f"{'channels-last' if args.channels_last else 'contiguous'}, {'bf16 autocast' if args.bf16 else 'fp32'}: "
        f"step {total:.2f} s; conv forward {conv_fwd / 1e6:.2f} s, conv backward {conv_bwd:.2f} s "
        f"({conv_bwd / total:.0%} of the step); aten::copy_ {copies:.2f} s"
        + (f"; stem forward {stem_times[0]:.2f} s" if stem_times else "")
    )
    print(ops.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
