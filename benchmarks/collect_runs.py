"""Collect finished ``atlas-vision train`` run directories into one CSV (one row per run), for docs/results.

    python benchmarks/collect_runs.py --out docs/results/communication-atlas_tiny/runs.csv RUN_DIR [RUN_DIR ...]
    python benchmarks/collect_runs.py --append --out ... MORE_RUN_DIRS    # add runs, keep the rows already there

A row holds the model, its ``model.kwargs`` (e.g. ``communication``), the seed, the final and best validation top-1,
the final train loss, epochs, training time and throughput from ``summary.json``, and the environment the run recorded
(``summary.json["environment"]``: versions, git commit, device, threads, date). Runs made before the trainer recorded
its environment leave those cells empty. Interrupted runs are refused: a partly trained model is not a result.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import yaml

RUN_COLUMNS = (
    "model",
    "kwargs",
    "seed",
    "task",
    "img_size",
    "val_top1",
    "best_val_top1",
    "best_epoch",
    "train_loss",
    "epochs",
    "train_s",
    "images_per_s",
    "num_params",
)
ENV_KEYS = ("device", "device_name", "torch", "timm", "atlas_vision", "git_commit", "dtype", "threads", "date")


def run_row(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    if summary.get("interrupted"):
        raise ValueError(f"{run_dir} was interrupted (exit code {summary.get('exit_code')}); resume it first")
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    kwargs = config["model"].get("kwargs") or {}
    env = summary.get("environment") or {}
    return {
        "run_dir": str(run_dir),
        "model": config["model"]["name"],
        "kwargs": " ".join(f"{k}={v}" for k, v in sorted(kwargs.items())),
        "seed": config["run"]["seed"],
        "task": config["data"]["task"],
        "img_size": "x".join(str(s) for s in config["data"]["img_size"]),
        **{k: summary.get(k) for k in RUN_COLUMNS[5:]},
        **{k: env.get(k, "") for k in ENV_KEYS},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the rows already in --out (run directories that no longer exist stay recorded)",
    )
    args = parser.parse_args()
    try:
        kept: list[dict] = []
        if args.append and args.out.exists():
            with args.out.open(newline="") as f:
                kept = list(csv.DictReader(f))
        known = {row["run_dir"] for row in kept}
        again = [str(r) for r in args.runs if str(r) in known]
        if again:
            raise ValueError(f"already in {args.out}: {', '.join(again)}")
        rows = kept + [run_row(r) for r in args.runs]
    except (OSError, ValueError, KeyError) as err:
        print(f"collect_runs: {err}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["run_dir", *RUN_COLUMNS, *ENV_KEYS])
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} runs -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
