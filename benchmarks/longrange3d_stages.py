"""Which part of the longrange3d task is hard to learn: seeing the marked objects, or relating them?

A short training loop outside the CLI (AdamW, batch ``--bs``, linear warm-up over 50 updates, cosine to 10 % of the
peak), on the task's own stream of volumes, in up to two stages:

1. ``--stage1`` volumes on the **count** target (how many of the two marked objects are at the higher level: 3
   classes, a sum over the two objects, so a window-only model can learn it too);
2. ``--stage2`` volumes on the task's label (same / different), with a new classifier.

Validation accuracy on 400 fixed volumes every 250 updates and at the end of a stage (``EVAL`` lines). Exploration
runs of 2026-12-02 (``docs/benchmarks.md`` section 10) used it, e.g.

    python benchmarks/longrange3d_stages.py --stage1 8000 --stage2 0 --patch 16 --window 2   # count not learnt
    python benchmarks/longrange3d_stages.py --stage1 5000 --stage2 8000 --patch 8 --window 4  # both stages
    python benchmarks/longrange3d_stages.py --model atlas3d_tiny_window --stage1 5000 --stage2 8000 --patch 8 --window 4

The CLI runs the same two stages with ``--data.target count`` and ``--model.init_from`` (``docs/tasks.md`` section 5).
"""

from __future__ import annotations

import argparse
import math
import time

import timm
import torch

from atlas_vision.data.longrange3d import LongRange3DDataset, LongRange3DParams

VAL_VOLUMES, EVAL_BATCH, EVAL_EVERY, LOG_EVERY = 400, 50, 250, 50


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="atlas3d_tiny")
    p.add_argument("--patch", type=int, default=16, help="patch_size (voxels per token, every axis)")
    p.add_argument("--window", type=int, default=2, help="window_size (tokens per window, every axis)")
    p.add_argument("--stage1", type=int, default=6000, help="volumes on the count target (0 = no stage 1)")
    p.add_argument("--stage2", type=int, default=12000, help="volumes on the same/different label")
    p.add_argument("--bs", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clutter", type=float, default=0.4)
    p.add_argument("--size", type=int, default=64, help="volume side (voxels)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    params = LongRange3DParams(volume_size=(a.size,) * 3, clutter=a.clutter)
    streams = {
        target: (
            LongRange3DDataset(10**7, "train", a.seed, params, target),
            LongRange3DDataset(VAL_VOLUMES, "val", 0, params, target),
        )
        for target in ("count", "label")
    }
    model = timm.create_model(a.model, num_classes=3, in_chans=1, patch_size=a.patch, window_size=a.window)
    start, cursor = time.time(), 0

    def evaluate(target: str) -> float:
        val = streams[target][1]
        model.eval()
        with torch.no_grad():
            right = 0
            for i in range(0, VAL_VOLUMES, EVAL_BATCH):
                items = [val[j] for j in range(i, i + EVAL_BATCH)]
                logits = model(torch.stack([x for x, _ in items]))  # [B, classes]
                right += int((logits.argmax(1) == torch.tensor([y for _, y in items])).sum())
        return right / VAL_VOLUMES

    def run_stage(volumes: int, target: str) -> None:
        nonlocal cursor
        train = streams[target][0]
        model.reset_classifier(len(train.class_names))
        opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.05)
        steps = volumes // a.bs
        warm, ema = max(1, min(50, steps // 10)), None
        for step in range(steps):
            cosine = 0.5 * (1 + math.cos(math.pi * step / steps)) * 0.9 + 0.1
            for group in opt.param_groups:
                group["lr"] = a.lr * min(1.0, (step + 1) / warm) * cosine
            items = [train[cursor + i] for i in range(a.bs)]  # stream samples: new volumes every update
            cursor += a.bs
            model.train()
            loss = torch.nn.functional.cross_entropy(
                model(torch.stack([x for x, _ in items])), torch.tensor([y for _, y in items])
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
            if (step + 1) % LOG_EVERY == 0:
                print(f"{target} step {step + 1}/{steps} vol {cursor} loss_ema {ema:.3f} t {time.time() - start:.0f}s")
            if (step + 1) % EVAL_EVERY == 0 or step + 1 == steps:
                print(f"EVAL {target} vol {cursor} acc {evaluate(target):.3f} t {time.time() - start:.0f}s", flush=True)

    if a.stage1:
        run_stage(a.stage1, "count")
    if a.stage2:
        run_stage(a.stage2, "label")


if __name__ == "__main__":
    main()
