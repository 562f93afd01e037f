"""Forward time of one top-down MSA pass per backend, including FlexAttention eager and compiled (issue 11, part 2).

    python benchmarks/flex_attention_speed.py --grid 64 --window 16 --stride 4 --heads 6 --head-dim 64 --threads 1

Times ``topdown_attention`` at scale 0 with every key scale, under ``torch.no_grad`` (FlexAttention has no CPU
backward), for ``split``, ``sdpa``, ``flex`` (what the backend runs on this device: eager on CPU, compiled on CUDA)
and, on CPU, ``flex`` through ``torch.compile(flex_attention)`` for this one shape (the variant the backend does not
use on CPU; its docstring says why). Prints one line per variant with the median of ``--iters`` runs and the max
difference from ``sdpa``.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
from core_workloads import time_step

from atlas_vision.ops import MultiScaleLayout, flex, topdown_attention


def _median_ms(fn: Callable[[], torch.Tensor], iters: int, device: torch.device) -> float:
    """Median of ``iters`` timed calls after one warm-up call (which compiles where the variant is compiled)."""
    return statistics.median(time_step(fn, 1, iters, device)[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", type=int, default=64, help="token grid side at scale 0 (default 64)")
    p.add_argument("--window", type=int, default=16)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads on CPU")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    layout = MultiScaleLayout.from_grid((args.grid, args.grid), args.window, args.stride)
    maps = [torch.randn(args.batch, *g.grid, args.heads, args.head_dim, device=device) for g in layout.scales]
    print(f"layout: {layout.describe()}; batch {args.batch}, {args.heads} heads of {args.head_dim}, {device}")

    def run(backend: str) -> torch.Tensor:
        return topdown_attention(maps[0], maps, maps, layout, 0, backend=backend)

    variants: dict[str, Callable[[], torch.Tensor]] = {b: (lambda b=b: run(b)) for b in ("split", "sdpa", "flex")}
    if device.type == "cpu":

        def run_compiled() -> torch.Tensor:
            flex.COMPILE_BACKEND["cpu"] = "inductor"
            try:
                return run("flex")
            finally:
                del flex.COMPILE_BACKEND["cpu"]

        variants["flex (compiled, CPU)"] = run_compiled
    with torch.no_grad():
        expected = run("sdpa")
        for name, fn in variants.items():
            ms = _median_ms(fn, args.iters, device)
            diff = float((fn() - expected).abs().max())
            print(f"{name:22s} {ms:10.1f} ms   max |diff| vs sdpa {diff:.1e}")


if __name__ == "__main__":
    main()
