"""Training throughput (images/s) of ``mixer_net`` with each token mixer: forward + backward + AdamW step, 1 thread.

Used to size what an accuracy comparison costs on a CPU (docs/results/README.md section 5):

    python benchmarks/train_step_rate.py --img 64 --patch 1 --dim 32 --heads 2 --depth 2 --window 8 --batch 16

prints one line per mixer: seconds per step (best of the timed steps after one warm-up) and images per second.
Random inputs; data loading and evaluation are not included, so a real run is slower.
"""

from __future__ import annotations

import argparse
import time

import timm
import torch

import atlas_vision.mixers  # noqa: F401  (registers mixer_net)

MIXERS = "msa,window,swin,hat,dilated,mamba,global"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--img", type=int, default=64)
    parser.add_argument("--patch", type=int, default=1)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--pool-stride", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    parser.add_argument("--mixers", default=MIXERS)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tokens = (-(-args.img // args.patch)) ** 2
    print(
        f"# {tokens} tokens per image, dim {args.dim}, heads {args.heads}, depth {args.depth}, window "
        f"{args.window}, batch {args.batch}, {args.threads} thread(s), torch {torch.__version__}"
    )
    for mixer in args.mixers.split(","):
        kwargs = {
            "mixer": mixer,
            "dim": args.dim,
            "depth": args.depth,
            "num_heads": args.heads,
            "patch_size": args.patch,
            "window": (args.window, args.window),
            "num_classes": 2,
        }
        if mixer == "msa":
            kwargs["pool_stride"] = (args.pool_stride, args.pool_stride)
        if mixer == "dilated":
            kwargs["segment_length"] = args.window * args.window
        net = timm.create_model("mixer_net", **kwargs)
        opt = torch.optim.AdamW(net.parameters(), 1e-3)
        x = torch.randn(args.batch, 3, args.img, args.img)
        y = torch.randint(0, 2, (args.batch,))
        times = []
        for _ in range(1 + args.steps):
            start = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - start)
        best = min(times[1:])
        print(f"{mixer:8s} {best:7.2f} s/step  {args.batch / best:7.1f} img/s", flush=True)


if __name__ == "__main__":
    main()
