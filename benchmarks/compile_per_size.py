"""How long ``torch.compile(model)`` takes for each new image size, with dynamo's default ``dynamic=None`` (after the
second shape it retraces with symbolic sizes) against ``dynamic=False`` (one static graph per size).

    python benchmarks/compile_per_size.py --model test_atlas --backend aot_eager --threads 2

Atlas's scales and windows are Python control flow of H x W, so every size is a new graph either way; the question
is only what each new size costs. Each setting runs in a fresh process (dynamo's caches are global). The time of a
call is the whole first call at that size (compile + run), under ``torch.no_grad``; the run alone is negligible at
these sizes. The last column checks the compiled output against eager.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

SIZES = ((2, 64, 64), (1, 64, 64), (1, 96, 96), (3, 72, 120), (1, 128, 96), (2, 160, 160))  # (batch, H, W)


def child(model_name: str, backend: str, dynamic: bool | None, threads: int) -> list[dict]:
    import timm
    import torch
    import torch._dynamo

    import atlas_vision  # noqa: F401  (registers the Atlas models with timm)

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = timm.create_model(model_name, num_classes=4).eval()
    compiled = torch.compile(model, backend=backend, dynamic=dynamic)
    rows = []
    for batch, h, w in SIZES:
        x = torch.randn(batch, 3, h, w)
        with torch.no_grad():
            start = time.perf_counter()
            out = compiled(x)
            seconds = time.perf_counter() - start
            error = (out - model(x)).abs().max().item()
        rows.append({"batch": batch, "size": f"{h}x{w}", "seconds": round(seconds, 1), "max_abs_error": error})
    rows.append({"graphs": torch._dynamo.utils.counters["stats"]["unique_graphs"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="test_atlas")
    parser.add_argument(
        "--backend", default="aot_eager", help="torch.compile backend (inductor: minutes per size on CPU)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=["none", "false"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        dynamic = None if args.child == "none" else False
        print(json.dumps(child(args.model, args.backend, dynamic, args.threads)))
        return 0
    results = {}
    for setting in ("none", "false"):
        cmd = [sys.executable, __file__, "--model", args.model, "--backend", args.backend]
        cmd += ["--threads", str(args.threads), "--child", setting]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[setting] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"model {args.model}, backend {args.backend}, {args.threads} threads; seconds of the first call at each size")
    print("| batch | size | dynamic=None (default) | dynamic=False | max abs error (None / False) |")
    print("|---|---|---|---|---|")
    for default, static in zip(results["none"][:-1], results["false"][:-1]):
        errors = f"{default['max_abs_error']:.1e} / {static['max_abs_error']:.1e}"
        print(f"| {default['batch']} | {default['size']} | {default['seconds']} | {static['seconds']} | {errors} |")
    print(f"graphs compiled: {results['none'][-1]['graphs']} / {results['false'][-1]['graphs']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
