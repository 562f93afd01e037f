"""Slides of different sizes: padding + mask in a batch vs batch 1 + gradient accumulation (issue 10).

    python benchmarks/slide_batching.py --out /tmp/slide_batching --slides 160 --epochs 10

Writes ``--slides`` feature grids (``features.zarr``, the layout ``slide embed`` writes) whose sides are drawn
uniformly from ``--min-side .. --max-side`` cells, each with an elliptic tissue mask, 64 feature channels and a label
that shifts channel 0 of the tissue cells by +/- ``--signal`` (a bag-level signal every head can learn), plus
``labels.csv`` (75 % train). Then trains every head twice with ``atlas-vision train`` (``data.task:
slide_features``, every grid padded to the largest side): ``--optim.batch_size 16`` and ``--optim.batch_size 1
--optim.global_batch 16`` (the same 16 slides per update, accumulated), same seed and epochs, and prints one
markdown row per run: training wall time, slides/s, and the validation metrics of ``atlas-vision eval``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

HEADS = (("slide_meanpool", 3e-3), ("slide_abmil", 1e-3), ("slide_atlas", 3e-3))


def _write_slide(path: Path, features: np.ndarray, valid: np.ndarray) -> None:
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.create_array("stage0", data=features.astype(np.float16))
    group.create_array("stage0_valid", data=valid.astype(np.uint8))
    group.create_array("region_embedding", data=np.zeros((1, 1, features.shape[0]), dtype=np.float32))
    group.attrs.update({"strides": [16], "downsample": 1.0})


def make_slides(out: Path, count: int, sides: tuple[int, int], signal: float, seed: int) -> int:
    """Write the grids and ``labels.csv``; returns the largest grid side."""
    rng = np.random.default_rng(seed)
    lines, largest = ["slide_id,label,split"], 0
    for i in range(count):
        h, w = (int(v) for v in rng.integers(sides[0], sides[1] + 1, size=2))
        largest = max(largest, h, w)
        yy, xx = np.mgrid[0:h, 0:w]
        valid = ((yy - h / 2 + 0.5) / (h / 2)) ** 2 + ((xx - w / 2 + 0.5) / (w / 2)) ** 2 <= 1.0  # [h, w]
        label = i % 2
        features = rng.standard_normal((64, h, w)).astype(np.float32)  # [C, h, w]
        features[0] += signal if label else -signal
        features[:, ~valid] = 0.0
        slide_id = f"slide_{i:04d}"
        _write_slide(out / "features" / slide_id / "features.zarr", features, valid)
        lines.append(f"{slide_id},{'positive' if label else 'negative'},{'train' if i < 0.75 * count else 'val'}")
    (out / "labels.csv").write_text("\n".join(lines) + "\n")
    return largest


def train_once(out: Path, head: str, lr: float, side: int, batch: int, epochs: int, seed: int) -> dict:
    from atlas_vision.train import TrainConfig, evaluate_checkpoint, from_dict, run_training

    mode = "pad16" if batch == 16 else "b1acc16"
    run_dir = out / "runs" / f"{head}-{mode}"
    tree = {
        "data": {
            "task": "slide_features",
            "root": str(out / "features"),
            "labels_csv": str(out / "labels.csv"),
            "img_size": [side, side],
            "num_workers": 0,
        },
        "model": {"name": head},
        "optim": {"lr": lr, "batch_size": batch, "global_batch": 16, "weight_decay": 0.05},
        "schedule": {"epochs": epochs, "warmup_epochs": 1.0},
        "run": {"out": str(run_dir), "seed": seed, "device": "cpu", "threads": 0, "eval_every": epochs},
    }
    start = time.perf_counter()
    run_training(from_dict(TrainConfig, tree))
    seconds = time.perf_counter() - start
    metrics = evaluate_checkpoint(run_dir, device="cpu", prefer="last")["slide_metrics"]
    return {"head": head, "mode": mode, "seconds": seconds, **metrics}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--slides", type=int, default=160)
    p.add_argument("--min-side", type=int, default=8)
    p.add_argument("--max-side", type=int, default=48)
    p.add_argument("--signal", type=float, default=0.3)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    side = make_slides(args.out, args.slides, (args.min_side, args.max_side), args.signal, args.seed)
    n_train = sum(1 for i in range(args.slides) if i < 0.75 * args.slides)
    print(f"{args.slides} slides, grid sides {args.min_side}..{args.max_side} cells, padded to {side}x{side}")
    print("| head | batching | train s | train slides/s | val accuracy | balanced acc. | ROC-AUC |")
    print("|---|---|---|---|---|---|---|")
    for head, lr in HEADS:
        for batch in (16, 1):
            r = train_once(args.out, head, lr, side, batch, args.epochs, args.seed)
            rate = n_train * args.epochs / r["seconds"]
            batching = "batch 16, padded + mask" if batch == 16 else "batch 1, accumulate 16"
            print(
                f"| `{head}` | {batching} | {r['seconds']:.1f} | {rate:.1f} | {r['accuracy']:.3f} | "
                f"{r['balanced_accuracy']:.3f} | {r['roc_auc']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
