"""The measured side of ``benchmarks/bench_core.py``: one workload (a whole model or one block) timed in this process.

``bench_core.py`` (the parent, which never imports torch) runs ``python core_workloads.py SPEC_JSON`` once per
measurement, so the peak resident memory reported here belongs to that measurement alone. ``bench_3d.py`` reuses the
timing helpers and :class:`GlobalBlock`.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from atlas_vision.environment import device_name
from atlas_vision.layers.conv3x3 import conv3x3_cpu_algorithm


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def time_step(step, warmup: int, iters: int, device: torch.device) -> tuple[list[float], float]:
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
        base = rss_mb()
    context = torch.enable_grad() if train else torch.no_grad()
    with context, conv3x3_cpu_algorithm(spec.get("conv3x3", "winograd")):  # only Atlas's stem has Conv3x3 layers
        times, first_ms = time_step(step, spec["warmup"], spec["iters"], device)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mb()) - base
    named = f"cpu ({device_name(device)}, {torch.get_num_threads()} threads)" if device.type == "cpu" else None
    return {
        "device": named or f"{spec['device']} ({device_name(device)})",
        "torch": torch.__version__,
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


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].lstrip().startswith("{"):
        sys.exit(
            f"usage: python {sys.argv[0]} SPEC_JSON (one JSON object); got {sys.argv[1:]} "
            "(a child of benchmarks/bench_core.py and bench_3d.py, which write the spec: run those)"
        )
    print(json.dumps(child(json.loads(sys.argv[1]))))
