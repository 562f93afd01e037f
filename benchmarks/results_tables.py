"""Markdown tables for docs/results/README.md from the CSVs written by ``atlas-vision bench`` (nothing typed by hand).

    python benchmarks/results_tables.py speed    docs/results/mixers-speed/mixers.csv [--ref msa] [--label mixer]
    python benchmarks/results_tables.py accuracy docs/results/mixers-accuracy/mixers.csv [--label mixer]
    python benchmarks/results_tables.py accuracy docs/results/communication-atlas_tiny/runs.csv --label model,kwargs

``speed``: fwd+bwd ms / peak MiB per variant and token count, the time relative to ``--ref`` at each token count and
the fitted exponent p of time ~ N^p over all token counts. ``accuracy``: val top-1 per seed, mean +- std, mean
training time. ``--label`` names the column(s) identifying a variant (``mixer``, or ``ablation,variant``).
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
from collections import defaultdict


def _rows(path: str, measure: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        # run tables of collect_runs.py have no ``measure`` column: every row is an accuracy row
        return [r for r in csv.DictReader(f) if r.get("measure", "accuracy") == measure]


def _name(row: dict[str, str], label: list[str]) -> str:
    """``ablation,variant`` -> ``communication=full``; ``model,kwargs`` -> ``atlas_tiny communication=none``."""
    parts = [row[c] for c in label if row[c]]
    return " ".join(parts) if any("=" in p for p in parts) else "=".join(parts)


def _ordered(names: list[str], order: list[str]) -> list[str]:
    """``names`` with those listed in ``order`` first, in that order; the rest keep their order."""
    return [n for n in order if n in names] + [n for n in names if n not in order]


def _fit(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 2:
        return None
    xs, ys = [math.log(n) for n, _ in points], [math.log(t) for _, t in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def speed(path: str, label: list[str], ref: str | None) -> str:
    rows = [r for r in _rows(path, "speed") if r["status"] == "ok"]
    tokens = sorted({int(r["tokens"]) for r in rows})
    table: dict[str, dict[int, dict[str, str]]] = defaultdict(dict)
    for r in rows:
        table[_name(r, label)][int(r["tokens"])] = r
    rel_to = f" (x {ref})" if ref else ""
    head = "| variant | " + " | ".join(f"{n} tok: fwd+bwd ms{rel_to} / MiB" for n in tokens) + " | p |"
    lines = [head, "|" + "---|" * (len(tokens) + 2)]
    for name, by_n in table.items():
        cells = []
        for n in tokens:
            r = by_n.get(n)
            if r is None:
                cells.append("—")
                continue
            t = float(r["fwd_bwd_ms"])
            rel = ""
            if ref and ref in table and n in table[ref]:
                rel = f" ({t / float(table[ref][n]['fwd_bwd_ms']):.2f}x)"
            cells.append(f"{t:,.0f}{rel} / {float(r['peak_mem_mb']):,.0f}")
        p = _fit([(n, float(by_n[n]["fwd_bwd_ms"])) for n in tokens if n in by_n])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'' if p is None else f'{p:.2f}'} |")
    return "\n".join(lines)


def accuracy(path: str, label: list[str], order: list[str]) -> str:
    rows = _rows(path, "accuracy")
    by: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        by[_name(r, label)].append(r)
    lines = [
        "| variant | seeds | val top-1 per seed (%) | mean ± std | train time per run (s) |",
        "|---|---|---|---|---|",
    ]
    for name in _ordered(list(by), order):
        rs = by[name]
        accs = [float(r["val_top1"]) for r in rs]
        std = statistics.stdev(accs) if len(accs) > 1 else 0.0
        seeds = ",".join(r["seed"] for r in rs)
        times = statistics.fmean(float(r["train_s"]) for r in rs)
        lines.append(
            f"| {name} | {seeds} | {' / '.join(f'{a:.1f}' for a in accs)} | {statistics.fmean(accs):.1f} ± {std:.1f} "
            f"| {times:,.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["speed", "accuracy"])
    parser.add_argument("csv")
    parser.add_argument("--label", default="mixer", help="comma list of columns naming a variant (default mixer)")
    parser.add_argument("--ref", default=None, help="variant the times are relative to (speed)")
    parser.add_argument("--order", default="", help="accuracy: comma list of variants to put first, in this order")
    args = parser.parse_args()
    label = args.label.split(",")
    order = [o for o in args.order.split(",") if o]
    print(speed(args.csv, label, args.ref) if args.kind == "speed" else accuracy(args.csv, label, order))


if __name__ == "__main__":
    main()
