"""Core performance numbers for docs/benchmarks.md: whole models, block cost growth, fast path vs. copying baselines.

Every measurement runs in its own subprocess (``core_workloads.py``; this parent never imports torch), so the peak
resident memory (``ru_maxrss``) it reports belongs to that measurement alone; the reported ``peak_mem_mb`` is the peak
RSS minus the RSS after the model and input were built (i.e. the activations, gradients and workspace of the timed
step). Times are the median over ``--iters`` timed
repetitions after ``--warmup`` untimed ones. fp32 on CPU (``--cpu-precision bf16``: bf16 autocast); on CUDA, bf16
autocast and ``torch.cuda`` peak memory.

    python benchmarks/bench_core.py models   --out docs/bench-core/models.csv
    python benchmarks/bench_core.py blocks   --out docs/bench-core/blocks.csv
    python benchmarks/bench_core.py fastpath --out docs/bench-core/fastpath.csv
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import subprocess
import sys
from pathlib import Path

WORKLOADS = Path(__file__).resolve().with_name("core_workloads.py")
CONV3X3_ALGORITHMS = ("auto", "winograd", "plain", "direct")  # atlas_vision.layers.conv3x3.ALGORITHMS (a test checks)


# ---------------------------------------------------------------------------------------------------------------------
# parent: plans, runs children, writes CSV


def _run_child(spec: dict, timeout: int) -> dict:
    proc = subprocess.run(
        [sys.executable, str(WORKLOADS), json.dumps(spec)],
        check=False,  # a failing child is a recorded row, not a crash
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
        return {"error": tail[0][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return ""


def plan(what: str, args) -> list[dict]:
    common = {
        "device": args.device,
        "warmup": args.warmup,
        "iters": args.iters,
        "threads": args.threads,
        "cpu_allocator": args.cpu_allocator,
        "cpu_precision": args.cpu_precision,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "conv3x3": args.conv3x3,
    }
    specs = []
    if what == "models":
        for model in args.models.split(","):
            for res in [int(r) for r in args.res.split(",")]:
                for mode in ("fwd", "fwd_bwd"):
                    specs.append({**common, "kind": "model", "model": model, "res": res, "mode": mode, "batch": 1})
    elif what == "blocks":
        for mixer in args.mixers.split(","):
            for tokens in [int(t) for t in args.tokens.split(",")]:
                side = math.isqrt(tokens)
                specs.append(
                    {
                        **common,
                        "kind": "block",
                        "mixer": mixer,
                        "side": side,
                        "mode": "fwd_bwd",
                        "batch": 1,
                        "dim": args.dim,
                        "heads": args.heads,
                        "window": 16,
                        "stride": 4,
                    }
                )
    elif what == "fastpath":
        for mixer in ("msa", "msa-split", "msa-naive-kv-copy"):
            for side in [int(s) for s in args.sides.split(",")]:
                for mode in ("fwd", "fwd_bwd"):
                    specs.append(
                        {
                            **common,
                            "kind": "block",
                            "mixer": mixer,
                            "side": side,
                            "mode": mode,
                            "batch": 1,
                            "dim": args.dim,
                            "heads": args.heads,
                            "window": 16,
                            "stride": 4,
                        }
                    )
    return specs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["models", "blocks", "fastpath"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    parser.add_argument("--models", default="atlas_base,vit_base_patch16_224")
    parser.add_argument("--res", default="512,1024")
    parser.add_argument("--mixers", default="msa,global")
    parser.add_argument("--tokens", default="1024,4096,16384")
    parser.add_argument("--sides", default="64,256", help="fastpath: token-grid sides (64 = 1024 px, 256 = 4096 px)")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--timeout", type=int, default=1800)
    parser.add_argument(
        "--cpu-allocator",
        choices=["default", "keep"],
        default="default",
        help="keep: every child (every model alike) runs with atlas_vision.cpu_allocator.keep_freed_memory(), "
        "as `atlas-vision train` does on CPU; default: glibc's malloc as it is",
    )
    parser.add_argument(
        "--cpu-precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="bf16: every model alike runs under torch.autocast('cpu', torch.bfloat16), fast only on CPUs with "
        "AMX / AVX512-BF16 (and hundreds of times slower than fp32 on those without); CUDA always uses bf16 autocast",
    )
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="models: weights and input in channels-last memory format (timm's train.py --channels-last)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="models: every model alike through torch.compile (inductor); the first warm-up call compiles "
        "(its time is the ms_first_warmup column), so use --warmup >= 1",
    )
    parser.add_argument(
        "--conv3x3",
        choices=CONV3X3_ALGORITHMS,
        default="winograd",
        help="the CPU algorithm of Atlas's stem 3x3 convs (atlas_vision.layers.conv3x3): winograd (default), auto "
        "(winograd for >= 96 channels on >= 32x32 images, else plain), plain (nn.Conv2d) or direct (oneDNN "
        "forward/input gradient, nine-GEMM weight gradient); other models have no Conv3x3 layers",
    )
    args = parser.parse_args(argv)
    if args.compile and args.warmup < 1:
        parser.error(f"--compile needs --warmup >= 1 (the compile happens in the first call), got {args.warmup}")
    return args


def main() -> int:
    args = parse_args()

    meta = {  # the child adds the device it ran on (named) and its torch version
        "device": args.device,
        "commit": _commit(),
        "date": datetime.date.today().isoformat(),
        "dtype": "bf16-autocast" if args.device.startswith("cuda") or args.cpu_precision == "bf16" else "fp32",
    }
    rows = []
    for spec in plan(args.what, args):
        result = _run_child(spec, args.timeout)
        row = {**{k: v for k, v in spec.items() if k not in ("warmup", "threads", "kind")}, **meta, **result}
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = sorted({key for row in rows for key in row}, key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
