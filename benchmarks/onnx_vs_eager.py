"""ONNX Runtime (CPU) vs eager PyTorch inference for an Atlas model at fixed sizes, batch 1, fp32.

For each size: export a fixed-size ONNX graph (``atlas_vision.export``, sdpa backend, opset 18), check that
onnxruntime's logits match eager PyTorch, then time forward passes of eager PyTorch (the default ``auto`` backend,
i.e. ``split`` on CPU, and the ``sdpa`` backend the graph was traced with) and of the onnxruntime session, with the
same number of threads.

    python benchmarks/onnx_vs_eager.py --model atlas_small --sizes 512 1024 --out docs/bench-core/onnx_vs_eager.csv
"""

from __future__ import annotations

import argparse
import csv
import datetime
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import timm
import torch

import atlas_vision  # noqa: F401
from atlas_vision.bench.timing import time_fn
from atlas_vision.export import OnnxAtlas, export_onnx, fixed_size
from atlas_vision.models import Atlas

FIELDS = [
    "model",
    "px",
    "runtime",
    "median_ms",
    "min_ms",
    "iqr_ms",
    "iters",
    "max_abs_diff_vs_eager",
    "threads",
    "export_s",
    "date",
    "commit",
    "torch",
    "onnxruntime",
]


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="atlas_small")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = timm.create_model(args.model, num_classes=100).eval()
    sdpa_model = Atlas(replace(model.config, backend="sdpa"))
    sdpa_model.load_state_dict(model.state_dict())
    sdpa_model.eval()
    rows = []
    common = {
        "model": args.model,
        "threads": args.threads,
        "date": datetime.date.today().isoformat(),
        "commit": _commit(),
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for px in args.sizes:
            x = torch.randn(1, 3, px, px)
            start = datetime.datetime.now()
            path = export_onnx(model, fixed_size(model, (px, px)), Path(tmp) / f"{px}.onnx")
            export_s = (datetime.datetime.now() - start).total_seconds()
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            options.inter_op_num_threads = 1
            runner = OnnxAtlas(path)
            runner.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            with torch.no_grad():
                eager = model(x).numpy()
            diff = float(np.abs(runner(x) - eager).max())
            timings = {
                "eager_auto(split)": lambda x=x: model(x),
                "eager_sdpa": lambda x=x: sdpa_model(x),
                "onnxruntime": lambda x=x, runner=runner: runner(x),
            }
            with torch.no_grad():
                for name, fn in timings.items():
                    t = time_fn(fn, torch.device("cpu"), warmup=args.warmup, iters=args.iters)
                    row = dict(
                        common,
                        px=px,
                        runtime=name,
                        median_ms=round(t.median_ms, 1),
                        min_ms=round(t.min_ms, 1),
                        iqr_ms=round(t.iqr_ms, 1),
                        iters=t.iters,
                        max_abs_diff_vs_eager=f"{diff:.2e}",
                        export_s=round(export_s, 1),
                    )
                    rows.append(row)
                    print(row, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
