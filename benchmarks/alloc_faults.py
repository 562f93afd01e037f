"""Page faults and system time of CPU training steps, with and without ``run.cpu_allocator keep``.

    python benchmarks/alloc_faults.py --model atlas_base --px 1024 --threads 2 --steps 4 --cpu-allocator keep

One process, one model (the CLI's ``--cpu-allocator``: ``keep`` applies
:func:`atlas_vision.cpu_allocator.keep_freed_memory` before anything is built, ``default`` leaves glibc's malloc as it
is); then ``--steps`` training steps (forward + summed-logits backward, batch 1, fp32) on one random image, each
printed with its wall time and the process's minor page faults, system and user CPU time over that step
(``resource.getrusage``). Step 0 includes first-touch of every buffer in both modes. The setting is process-wide and
permanent, so compare two runs, not two phases of one.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import torch

import atlas_vision  # noqa: F401  (registers the Atlas models)
from atlas_vision.bench.models import model_kwargs
from atlas_vision.cpu_allocator import keep_freed_memory


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="atlas_base")
    p.add_argument("--px", type=int, default=1024)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--cpu-allocator", choices=["default", "keep"], default="default")
    args = p.parse_args()
    if args.cpu_allocator == "keep" and (why_not := keep_freed_memory()) is not None:
        print(f"alloc_faults: --cpu-allocator keep not applied: {why_not}", file=sys.stderr)
        return 2
    import timm

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = timm.create_model(args.model, **model_kwargs(args.model, (args.px, args.px))).train()
    x = torch.randn(1, 3, args.px, args.px)
    for step in range(args.steps):
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        model(x).sum().backward()
        wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
        model.zero_grad(set_to_none=True)
        print(
            f"{args.model} {args.px}px cpu_allocator={args.cpu_allocator} step {step}: {wall:.2f} s, "
            f"minor faults {after.ru_minflt - before.ru_minflt}, sys {after.ru_stime - before.ru_stime:.2f} s, "
            f"user {after.ru_utime - before.ru_utime:.2f} s",
            flush=True,
        )
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
