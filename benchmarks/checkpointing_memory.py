"""Peak memory and time of one training step with gradient checkpointing off, on the MSA blocks only, and on the
blocks and the conv stem (what ``set_grad_checkpointing(True)`` does since 2026-12-07).

    python benchmarks/checkpointing_memory.py --model atlas_small --px 1024 --batch 2 --threads 2

Each mode runs in two fresh processes, one for the peak and one for the time, since what makes one honest spoils the
other. The peak: ``atlas_vision.bench.timing.measure_peak_memory`` of the first step -- on CPU the resident-memory
high-water mark above the process's size before it (VmHWM, reset through ``/proc/self/clear_refs``), here with glibc's mmap threshold fixed
(``MALLOC_MMAP_THRESHOLD_``) so that freed activations go back to the system and the peak follows what is alive --
which makes every large allocation a fresh ``mmap`` and doubles a step's time here. The time: the median of the
steps after the first, with freed memory kept in the process as the trainer does (``run.cpu_allocator keep``,
``atlas_vision/cpu_allocator.py``; ``bench.timing.time_fn``). On CUDA the peak is ``torch.cuda.max_memory_allocated``
above the allocation before the step. A step is forward, a loss and backward (no optimizer).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

MODES = ("none", "blocks", "all")


def child(model_name: str, px: int, batch: int, mode: str, steps: int, threads: int, device: str) -> dict:
    import timm
    import torch

    import atlas_vision  # noqa: F401  (registers the Atlas models with timm)
    from atlas_vision.bench.timing import measure_peak_memory, time_fn

    torch.manual_seed(0)
    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    model = timm.create_model(model_name, num_classes=10).to(dev).train()
    model.set_grad_checkpointing(mode != "none")
    if mode == "blocks":  # the MSA blocks only: what set_grad_checkpointing did before the stem was included
        model.stem.grad_checkpointing = False
    x = torch.randn(batch, 3, px, px, device=dev)

    def step() -> None:
        model(x).logsumexp(-1).sum().backward()
        model.zero_grad(set_to_none=True)

    peak = measure_peak_memory(step, dev)  # the first step: VmHWM reset on CPU, max_memory_allocated on CUDA
    step_s = time_fn(step, dev, warmup=0, iters=steps - 1).median_ms / 1e3 if steps > 1 else None
    return {"mode": mode, "peak_mb": round(peak.peak_mb, 1), "step_s": None if step_s is None else round(step_s, 3)}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="atlas_small")
    p.add_argument("--px", type=int, default=1024, help="image side")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="steps per mode: the first for the peak, the rest timed")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {', '.join(MODES)}")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--keep-freed-memory", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        if args.keep_freed_memory:
            from atlas_vision.cpu_allocator import keep_freed_memory

            keep_freed_memory()
        print(json.dumps(child(args.model, args.px, args.batch, args.child, args.steps, args.threads, args.device)))
        return 0
    modes = args.modes.split(",")
    if bad := [m for m in modes if m not in MODES]:
        p.error(f"--modes: unknown {bad}; valid: {', '.join(MODES)}")
    if args.steps < 1:
        p.error(f"--steps must be >= 1, got {args.steps}")
    print(f"{args.model} {args.px}x{args.px} batch {args.batch} on {args.device}, forward + backward")
    print("| checkpointing | peak memory above the start (MiB) | step (s) |\n|---|---|---|")
    for mode in modes:
        peak = _run_child([*argv, "--child", mode, "--steps", "1"], {"MALLOC_MMAP_THRESHOLD_": "65536"})
        timed = _run_child([*argv, "--child", mode, "--keep-freed-memory"], {}) if args.steps > 1 else {}
        cells = [peak.get("error") or f"{peak['peak_mb']:.0f}", timed.get("error") or str(timed.get("step_s") or "")]
        print(f"| {mode} | {cells[0]} | {cells[1]} |")
    return 0


def _run_child(argv: list[str], env: dict[str, str]) -> dict:
    """This script with ``argv`` in a fresh process (``env`` added): its JSON row, or ``{"error": last line}``."""
    cmd = [sys.executable, __file__, *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env}, check=False)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        return {"error": f"failed: {lines[-1] if lines else proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
