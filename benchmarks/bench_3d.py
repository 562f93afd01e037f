"""3-D benchmarks for docs/benchmarks.md: one 3-D MSA block vs one global-attention block, and a large volume.

Every measurement runs in its own subprocess (peak RSS belongs to it alone). fp32 on CPU.

    python benchmarks/bench_3d.py blocks --out docs/bench-core/blocks3d.csv   # 16^3, 32^3, 64^3 tokens, fwd+bwd
    python benchmarks/bench_3d.py volume --out docs/bench-core/volume512.csv  # 512^3 voxels, atlas3d_small

``blocks``: one ``MSABlock(ndim=3)`` over all scales of a cubic token grid (window 8x8x8, stride 2: the atlas3d
geometry) vs timm's ViT ``Block`` over the flattened grid (SDPA), forward + backward, batch 1. Global attention is
skipped above ``--global-max-tokens`` (its cost there is quadratic; reported as not run). Peak memory is the peak RSS
minus the RSS after inputs and module were built.

``volume``: ``atlas3d_small`` (1 input channel, 2 classes) on a ``[1, 1, S, S, S]`` volume under
``torch.inference_mode``: wall time of each call and the process's peak RSS (the whole process: model + input +
activations), and the RSS before the call.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from core_workloads import GlobalBlock, peak_rss_mb, rss_mb, time_step


def _block_child(spec: dict) -> dict:
    from atlas_vision.layers import MSABlock
    from atlas_vision.ops import MultiScaleLayout, summarize

    side, dim, heads = spec["side"], spec["dim"], spec["heads"]
    x = torch.randn(1, side, side, side, dim)
    if spec["mixer"] == "global":
        layout, module, xs = None, GlobalBlock(dim, heads), [x]
    else:
        layout = MultiScaleLayout.from_grid((side,) * 3, spec["window"], spec["stride"])
        module = MSABlock(dim, heads, num_scale_blocks=layout.num_scales, backend=spec["backend"], ndim=3)
        xs = [x]
        for _ in range(1, layout.num_scales):
            xs.append(summarize(xs[-1], layout.stride))
    xs = [t.detach().requires_grad_() for t in xs]

    def step():
        outs = module(xs) if layout is None else module(xs, layout, 0)
        sum(o.sum() for o in outs).backward()
        module.zero_grad(set_to_none=True)
        for t in xs:
            t.grad = None

    base = rss_mb()
    times, _ = time_step(step, spec["warmup"], spec["iters"], torch.device("cpu"))
    return {
        "ms_median": round(statistics.median(times), 1),
        "ms_min": round(min(times), 1),
        "peak_mem_mb": round(peak_rss_mb() - base, 1),
        "scales": 1 if layout is None else layout.num_scales,
    }


def _volume_child(spec: dict) -> dict:
    from atlas_vision.models import create_model  # registers the 3-D variants (timm knows them only on demand)

    model = create_model(spec["model"], num_classes=2, in_chans=1).eval()
    x = torch.randn(1, 1, *spec["size"])
    rss_before = rss_mb()
    times = []
    with torch.inference_mode():
        for _ in range(spec["iters"]):
            start = time.perf_counter()
            out = model(x)
            times.append(time.perf_counter() - start)
    assert out.shape == (1, 2) and bool(torch.isfinite(out).all())
    layout = model.layout_for(model.token_grid(spec["size"]))
    return {
        "s_per_volume": [round(t, 1) for t in times],
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "scales": " | ".join(layout.describe().splitlines()),
    }


def _run_child(spec: dict, timeout: int) -> dict:
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "_child", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout} s"}
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return {"error": tail[0][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fitted_exponent(tokens: list[int], times: list[float]) -> float:
    """Least-squares slope of log(time) against log(tokens)."""
    lx, ly = [math.log(t) for t in tokens], [math.log(t) for t in times]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "_child":
        spec = json.loads(sys.argv[2])
        torch.manual_seed(0)
        torch.set_num_threads(spec["threads"])
        result = _block_child(spec) if spec["kind"] == "block" else _volume_child(spec)
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["blocks", "volume"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--sides", default="16,32,64", help="blocks: cubic token-grid sides")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--backend", default="auto", help="blocks: MSA attention backend")
    parser.add_argument("--global-max-tokens", type=int, default=32768)
    parser.add_argument("--model", default="atlas3d_small")
    parser.add_argument("--size", default="512,512,512", help="volume: D,H,W voxels")
    parser.add_argument("--timeout", type=int, default=1800)
    args = parser.parse_args()

    meta = {
        "machine": f"cpu ({platform.machine()}, {args.threads} thread(s); 2-core CPU shared with other agents)",
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    common = {"threads": args.threads, "warmup": args.warmup, "iters": args.iters}
    specs = []
    if args.what == "blocks":
        for mixer in ("msa", "global"):
            for side in (int(s) for s in args.sides.split(",")):
                spec = {**common, "kind": "block", "mixer": mixer, "side": side, "dim": args.dim, "heads": args.heads,
                        "window": 8, "stride": 2, "backend": args.backend}  # fmt: skip
                specs.append(spec)
    else:
        size = [int(s) for s in args.size.split(",")]
        specs.append({**common, "kind": "volume", "model": args.model, "size": size})
    rows = []
    for spec in specs:
        tokens = spec["side"] ** 3 if spec["kind"] == "block" else None
        if spec["kind"] == "block" and spec["mixer"] == "global" and tokens > args.global_max_tokens:
            result = {"error": f"not run: {tokens} tokens > --global-max-tokens={args.global_max_tokens}"}
        else:
            result = _run_child(spec, args.timeout)
        row = {**{k: v for k, v in spec.items() if k not in ("kind", "threads")}, "tokens": tokens, **result, **meta}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.what == "blocks":
        for mixer in ("msa", "global"):
            done = [r for r in rows if r["mixer"] == mixer and "ms_median" in r]
            if len(done) >= 2:
                p = fitted_exponent([r["tokens"] for r in done], [r["ms_median"] for r in done])
                print(f"{mixer}: fitted exponent p = {p:.2f} over {[r['tokens'] for r in done]} tokens", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
