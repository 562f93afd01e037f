"""Time ``Conv3x3``'s CPU algorithms against each other on the shapes our models run, to set ``"auto"``'s thresholds.

    python benchmarks/conv3x3_algorithms.py --threads 1 2 --out docs/bench-core/conv3x3_algorithms_<cpu>.csv

For every shape (batch, channels in = out, height = width) and thread count, each algorithm of
``atlas_vision.layers.conv3x3`` (``winograd``, ``plain``, ``direct``) runs ``Conv3x3`` forward + backward (input and
weight gradient, summed output) and forward alone under ``no_grad``; a row holds the median and minimum of
``--repeats`` timed calls after one warm-up, and which algorithm ``auto`` picks for that shape. Before timing, every
algorithm's forward and gradients are checked against ``nn.Conv2d`` in float64 on the shape with its batch cut to one.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from atlas_vision.environment import cpu_model, git_commit
from atlas_vision.layers.conv3x3 import Conv3x3, auto_cpu_algorithm, conv3x3_cpu_algorithm

ALGORITHMS = ("winograd", "plain", "direct")
SHAPES = (  # (batch, channels, side): the default run's stem convs, then Atlas-S / Atlas-B stems at 256-1024 px
    (64, 32, 16),
    (64, 64, 16),
    (64, 96, 16),
    (64, 128, 16),
    (16, 32, 64),
    (16, 96, 64),
    (16, 192, 32),
    (1, 32, 256),
    (1, 64, 256),
    (1, 96, 256),
    (1, 128, 256),
    (1, 192, 128),
    (1, 192, 256),
    (1, 384, 128),
    (4, 96, 128),
    (4, 192, 64),
)
FIELDS = ["threads", "batch", "channels", "side", "mode", "algorithm", "ms_median", "ms_min", "auto_picks"]
FIELDS += ["cpu", "torch", "commit", "date"]


def _times_ms(fn: Callable[[], object], repeats: int) -> list[float]:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _check_against_nn_conv2d(channels: int, side: int) -> None:
    """Each algorithm's output and gradients equal ``F.conv2d``'s in float64 (batch 1) before any of it is timed."""
    conv = Conv3x3(channels, channels).double()
    x = torch.randn(1, channels, side, side, dtype=torch.float64, requires_grad=True)
    want_y = F.conv2d(x, conv.weight, conv.bias, padding=1)
    want = torch.autograd.grad(want_y.sum(), (x, conv.weight))
    for algorithm in ALGORITHMS:
        with conv3x3_cpu_algorithm(algorithm):
            y = conv(x)
        got = torch.autograd.grad(y.sum(), (x, conv.weight))
        for a, b in zip((y, *got), (want_y, *want), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"{algorithm} {channels}ch {side}^2")


def measure(batch: int, channels: int, side: int, repeats: int) -> list[dict[str, object]]:
    conv = Conv3x3(channels, channels)
    x = torch.randn(batch, channels, side, side)
    x_train = x.clone().requires_grad_(True)
    picks = auto_cpu_algorithm(x, conv.weight)
    rows = []
    for mode in ("train", "infer"):
        for algorithm in ALGORITHMS:

            def step(name: str = algorithm, train: bool = mode == "train") -> None:
                with conv3x3_cpu_algorithm(name), torch.set_grad_enabled(train):
                    if train:
                        conv(x_train).sum().backward()
                    else:
                        conv(x)

            times = _times_ms(step, repeats)
            rows.append(
                {"batch": batch, "channels": channels, "side": side, "mode": mode, "algorithm": algorithm}
                | {"ms_median": round(statistics.median(times), 2), "ms_min": round(min(times), 2)}
                | {"auto_picks": picks}
            )
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op thread counts to run")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per row (median and min reported)")
    p.add_argument("--smoke", action="store_true", help="two small shapes, 2 repeats (a check that it runs)")
    p.add_argument("--out", type=Path, help="CSV to write (printed only without it)")
    args = p.parse_args()
    if any(t < 1 for t in args.threads) or args.repeats < 1:
        p.error(f"--threads and --repeats must be >= 1, got threads {args.threads}, repeats {args.repeats}")
    shapes = ((2, 8, 16), (1, 96, 32)) if args.smoke else SHAPES
    repeats = 2 if args.smoke else args.repeats
    torch.manual_seed(0)
    for _, channels, side in shapes:
        _check_against_nn_conv2d(channels, min(side, 40))
    meta = {"cpu": cpu_model(), "torch": torch.__version__, "commit": git_commit(), "date": dt.date.today().isoformat()}
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch, channels, side in shapes:
            for row in measure(batch, channels, side, repeats):
                rows.append({"threads": threads} | row | meta)
                print(
                    f"{threads} thr  {batch:3d} x {channels:3d}ch {side:3d}^2  {row['mode']:5s}  "
                    f"{row['algorithm']:8s} {row['ms_median']:9.1f} ms  (auto picks {row['auto_picks']})",
                    flush=True,
                )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
