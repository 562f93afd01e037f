"""Core performance numbers for docs/benchmarks.md: whole models, block cost growth, fast path vs. copying baselines.

Every measurement runs in its own subprocess, so the peak resident memory (``ru_maxrss``) it reports belongs to that
measurement alone; the reported ``peak_mem_mb`` is the peak RSS minus the RSS after the model and input were built
(i.e. the activations, gradients and workspace of the timed step). Times are the median over ``--iters`` timed
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
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from atlas_vision.environment import device_name
from atlas_vision.layers.conv3x3 import ALGORITHMS as CONV3X3_ALGORITHMS
from atlas_vision.layers.conv3x3 import conv3x3_cpu_algorithm


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _time(step, warmup: int, iters: int, device: torch.device) -> tuple[list[float], float]:
    """Milliseconds of each timed call, and of the first warm-up call (which includes a compile)."""
    first_ms = float("nan")
    for index in range(warmup):
        start = time.perf_counter()
        step()
        if index == 0:
            first_ms = (time.perf_counter() - start) * 1000
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    return times, first_ms


# ---------------------------------------------------------------------------------------------------------------------
# workloads (run inside the child process)


def _build_model(name: str, device: torch.device) -> nn.Module:
    import timm

    import atlas_vision  # noqa: F401

    kwargs = {"num_classes": 100}
    if name.startswith("vit_"):
        kwargs["dynamic_img_size"] = True
    return timm.create_model(name, **kwargs).to(device)


class GlobalBlock(nn.Module):
    """A ViT block (timm's), run on [B, h, w, C] (or [B, d, h, w, C]) maps flattened to one sequence: global
    attention."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        from timm.models.vision_transformer import Block

        self.block = Block(dim, heads, mlp_ratio=4.0, qkv_bias=True)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        x = xs[0]
        return [self.block(x.flatten(1, -2)).view_as(x)]  # [B, tokens, C]


class MSAOnly(nn.Module):
    """One MSA block over all scales of a grid (first scale 0), as used in Atlas's first stage."""

    def __init__(self, dim: int, heads: int, num_scales: int, naive: str | None, backend: str = "sdpa"):
        super().__init__()
        from atlas_vision.layers import MSABlock

        self.block = MSABlock(dim, heads, num_scale_blocks=num_scales, backend=backend)
        self.naive = naive

    def forward(self, xs, layout):
        if self.naive is None:
            return self.block(xs, layout, 0)
        import atlas_vision.layers.msa_block as msa_module

        real = msa_module.topdown_attention
        msa_module.topdown_attention = _naive_topdown_factory(self.naive, real)
        try:
            return self.block(xs, layout, 0)
        finally:
            msa_module.topdown_attention = real


def _naive_topdown_factory(kind: str, real):
    """Top-down attention that materialises per-fine-window copies of the coarse K/V, as the reference code does.

    ``kv-copy``: K/V projected once per scale, then each fine window gets its own copy of every ancestor window's K/V
    (``repeat_interleave`` of whole coarse windows, i.e. the reference code's replication, here with the correct
    spatial ancestor) concatenated behind its own keys, then SDPA. Everything else is identical to the fast path.
    """
    from atlas_vision.ops.windows import from_windows, to_windows, window_validity

    def naive(q, keys, values, layout, scale, backend=None):
        if len(keys) == 1:
            return real(q, keys, values, layout, scale, backend=backend)
        geo = layout[scale]
        q_w = to_windows(q, geo.num_windows, geo.window)  # [B, W, n, T, d]
        b, num_w, n, t, d = q_w.shape
        ks, vs, valids = [], [], []
        for offset, (k, v) in enumerate(zip(keys, values)):
            src = layout[scale + offset]
            k_w = to_windows(k, src.num_windows, src.window)
            v_w = to_windows(v, src.num_windows, src.window)
            valid = window_validity(src.grid, src.num_windows, src.window, q.device)
            if offset > 0:
                index = torch.tensor(layout.ancestor_windows(scale, scale + offset), device=q.device)
                k_w = k_w[:, index].clone()  # explicit copy per fine window
                v_w = v_w[:, index].clone()
                valid = valid[index]
            ks.append(k_w)
            vs.append(v_w)
            valids.append(valid)
        k_all, v_all, valid_all = torch.cat(ks, 3), torch.cat(vs, 3), torch.cat(valids, 1)
        s = k_all.shape[3]
        mask = valid_all[None, :, None, None, :].expand(b, num_w, 1, 1, s).reshape(b * num_w, 1, 1, s)
        out = F.scaled_dot_product_attention(
            q_w.reshape(b * num_w, n, t, d),
            k_all.reshape(b * num_w, n, s, d),
            v_all.reshape(b * num_w, n, s, d),
            attn_mask=mask,
        )
        return from_windows(out.view(b, num_w, n, t, d), geo.num_windows, geo.window, geo.grid)

    return naive


def child(spec: dict) -> dict:
    if spec.get("cpu_allocator") == "keep":
        from atlas_vision.cpu_allocator import keep_freed_memory

        why_not = keep_freed_memory()
        if why_not is not None:
            raise RuntimeError(f"--cpu-allocator keep: {why_not}")
    torch.manual_seed(0)
    torch.set_num_threads(spec.get("threads") or torch.get_num_threads())
    device = torch.device(spec["device"])
    kind = spec["kind"]
    train = spec["mode"] == "fwd_bwd"
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else torch.autocast("cpu", dtype=torch.bfloat16, enabled=spec.get("cpu_precision") == "bf16")
    )

    output_dtypes: set[str] = set()
    if kind == "model":
        model = _build_model(spec["model"], device).train(train)
        x = torch.randn(spec["batch"], 3, spec["res"], spec["res"], device=device)
        if spec.get("channels_last"):  # timm's `train.py --channels-last`: weights and input NHWC
            model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        if spec.get("compile"):  # inductor, compiled on the first (warm-up) call
            model = torch.compile(model)

        def step():
            with autocast:
                out = model(x)
            output_dtypes.add(str(out.dtype).removeprefix("torch."))  # what the precision option really did
            if train:
                out.float().sum().backward()
                model.zero_grad(set_to_none=True)

    else:  # one block on a square token grid
        from atlas_vision.ops import MultiScaleLayout, summarize

        side = spec["side"]
        dim, heads = spec["dim"], spec["heads"]
        if spec["mixer"] == "global":
            layout = None
            module = GlobalBlock(dim, heads).to(device)
            xs = [torch.randn(spec["batch"], side, side, dim, device=device)]
        else:
            layout = MultiScaleLayout.from_grid((side, side), spec["window"], spec["stride"])
            mixer = spec["mixer"]
            naive = mixer.removeprefix("msa-naive-") if mixer.startswith("msa-naive-") else None
            backend = mixer.removeprefix("msa-") if mixer in ("msa-split", "msa-sdpa") else "sdpa"
            module = MSAOnly(dim, heads, layout.num_scales, naive, backend).to(device)
            xs = [torch.randn(spec["batch"], side, side, dim, device=device)]
            for _ in range(1, layout.num_scales):
                xs.append(summarize(xs[-1], layout.stride))
        module.train(train)
        xs = [x.detach().requires_grad_(train) for x in xs]

        def step():
            with autocast:
                outs = module(xs) if layout is None else module(xs, layout)
            if train:
                sum(o.float().sum() for o in outs).backward()
                module.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = _rss_mb()
    context = torch.enable_grad() if train else torch.no_grad()
    with context, conv3x3_cpu_algorithm(spec.get("conv3x3", "winograd")):  # only Atlas's stem has Conv3x3 layers
        times, first_ms = _time(step, spec["warmup"], spec["iters"], device)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _peak_rss_mb()) - base
    return {
        "ms_median": statistics.median(times),
        "ms_min": min(times),
        "ms_first_warmup": round(first_ms, 1),
        "peak_mem_mb": round(peak, 1),
        "iters": len(times),
        **({"output_dtype": ",".join(sorted(output_dtypes))} if output_dtypes else {}),
        **({"compiled_graphs": _compiled_graph_count()} if spec.get("compile") else {}),
    }


def _compiled_graph_count() -> int:
    """Graphs dynamo compiled in this process: 0 would mean --compile timed eager code."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


# ---------------------------------------------------------------------------------------------------------------------
# parent: plans, runs children, writes CSV


def _run_child(spec: dict, timeout: int) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "_child", json.dumps(spec)],
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


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "_child":
        print(json.dumps(child(json.loads(sys.argv[2]))))
        return 0
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
        choices=list(CONV3X3_ALGORITHMS),
        default="winograd",
        help="the CPU algorithm of Atlas's stem 3x3 convs (atlas_vision.layers.conv3x3): winograd (default), auto "
        "(winograd for >= 96 channels on >= 32x32 images, else plain), plain (nn.Conv2d) or direct (oneDNN "
        "forward/input gradient, nine-GEMM weight gradient); other models have no Conv3x3 layers",
    )
    args = parser.parse_args()
    if args.compile and args.warmup < 1:
        parser.error(f"--compile needs --warmup >= 1 (the compile happens in the first call), got {args.warmup}")

    meta = {
        "device": args.device
        if args.device != "cpu"
        else f"cpu ({device_name(torch.device('cpu'))}, {args.threads or torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "commit": _commit(),
        "date": datetime.date.today().isoformat(),
        "dtype": "bf16-autocast" if args.device.startswith("cuda") or args.cpu_precision == "bf16" else "fp32",
    }
    rows = []
    for spec in plan(args.what, args):
        result = _run_child(spec, args.timeout)
        row = {**{k: v for k, v in spec.items() if k not in ("warmup", "threads", "kind")}, **result, **meta}
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
