"""Merge the CSVs of several ``atlas-vision bench mixers|ablations`` runs into one, and redraw the accuracy plot.

Long accuracy comparisons are run as one process per (variant, seed) so that two can share a 2-core machine and a
lost process loses one row; this puts their rows back together for docs/results:

    python benchmarks/merge_bench_csv.py --out docs/results/mixers-accuracy/mixers.csv runs/t3/*/mixers.csv

Rows are copied unchanged (each already records its device, versions, commit, seed and date); the columns are the
union of the inputs' in first-seen order. Two rows for the same (label, measure, tokens, seed) are refused: that is a
run made twice, and picking one would be a silent choice. Next to ``--out`` it writes
``<stem>_accuracy_vs_time.png`` (mean val top-1 against mean training time, min-max over seeds) with the same plot
function the bench commands use.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from atlas_vision.bench.plots import plot_accuracy_vs_time
from atlas_vision.bench.report import read_csv, write_csv


def merge(paths: list[Path], label: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    columns: list[str] = []
    rows: list[dict[str, str]] = []
    seen: dict[tuple[str, ...], Path] = {}
    for path in paths:
        for row in read_csv(path):
            columns += [c for c in row if c not in columns]
            key = tuple(row.get(c, "") for c in (*label, "measure", "tokens", "seed"))
            if key in seen:
                raise ValueError(f"{path}: row {key} is already in {seen[key]}")
            seen[key] = path
            rows.append(row)
    return columns, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csvs", nargs="+", type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--label", default="mixer", help="comma list of columns naming a variant (default mixer)")
    parser.add_argument("--title", default="bench mixers", help="plot title prefix")
    args = parser.parse_args()
    label = args.label.split(",")
    try:
        columns, rows = merge(args.csvs, label)
    except ValueError as err:
        sys.exit(f"error: {err}")
    write_csv(rows, args.out, columns)
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row in rows:
        if row["measure"] == "accuracy" and row.get("val_top1"):
            points["=".join(row[c] for c in label)].append((float(row["train_s"]), float(row["val_top1"])))
    if points:
        plot_accuracy_vs_time(
            points, args.out.with_name(f"{args.out.stem}_accuracy_vs_time.png"), f"{args.title}: accuracy vs time"
        )
    print(f"{len(rows)} rows from {len(args.csvs)} files -> {args.out}")


if __name__ == "__main__":
    main()
