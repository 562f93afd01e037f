"""The GPU suite's training-step rows beside the paper's speed claims, and each backend beside the others.

``python benchmarks/gpu_vs_paper.py RESULT_DIR`` prints the markdown of ``RESULT_DIR/train.csv`` and
``RESULT_DIR/large.csv`` (a folder ``benchmarks/gpu_suite.py`` wrote); ``gpu_suite.py`` appends the same section to
its ``summary.md``. Three tables:

1. **Atlas vs the baselines** at each image size: the time per image of each baseline divided by Atlas's (its fastest
   measured backend), so 4.3 reads "4.3x slower than Atlas" as in the paper's "relative" columns, beside the paper's
   figure where it has one. The paper's are whole-training wall times on 8xH100 (Table 1 at 1024 px, Base models;
   approximate readings of Figure 1a at 2048 and 4096 px, model size not stated), ours one bf16 training step on one
   GPU (forward, loss, backward, AdamW), so they agree only as far as a step's cost is what sets a run's time.
2. **Backends**: images/s of every Atlas backend at each size relative to ``sdpa`` -- what ``auto`` should pick on
   this device (``atlas_vision/ops/dispatch.py``).
3. **Large**: the 8192 px training step and the 16384 px inference, with peak memory.

Nothing here measures: it reads rows. A row that did not run (``oom``, ``skipped: ...``, ``error: ...``) shows its
status instead of a ratio.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: The paper's runtime of each baseline relative to Atlas (higher = slower than Atlas), per image size, with where
#: it comes from (../shared/docs/atlas-spec.md section 5).
PAPER_RELATIVE: dict[int, dict[str, str]] = {
    1024: {
        "vit_base_patch16_224": "1.15 (Table 1)",
        "swin_base_patch4_window7_224": "1.6 (Table 1)",
        "convnext_base": "4.3 (Table 1)",
    },
    2048: {
        "vit_base_patch16_224": "~2.7 (Fig. 1a: ~215 h / ~80 h)",
        "swin_base_patch4_window7_224": "~1.75 (Fig. 1a: ~140 h / ~80 h)",
        "convnext_base": "~4.8 (Fig. 1a: ~385 h / ~80 h)",
    },
    4096: {
        "vit_base_patch16_224": "~9.0 (Fig. 1a: ~2620 h / ~290 h)",
        "swin_base_patch4_window7_224": "~2.2 (Fig. 1a: ~625 h / ~290 h)",
        "convnext_base": "OOM (Fig. 1a)",
    },
}

Row = Mapping[str, Any]


def _number(value: Any) -> float | None:
    """A CSV cell or a row value as a float; ``None`` for an empty cell."""
    if value is None or value == "":
        return None
    return float(value)


def _ok(row: Row) -> bool:
    return row.get("status") == "ok" and (_number(row.get("images_per_s")) or 0) > 0


def _is_atlas(row: Row) -> bool:
    return str(row.get("model", "")).startswith(("atlas", "test_atlas"))


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def atlas_vs_baselines(train_rows: Iterable[Row]) -> list[str]:
    """Table 1 of the module docstring, as markdown lines."""
    rows = list(train_rows)
    lines = [
        "| img | Atlas (fastest backend) | img/s | baseline | img/s | baseline time / Atlas time | paper | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for img in sorted({int(r["img"]) for r in rows}):
        at_size = [r for r in rows if int(r["img"]) == img]
        atlas_ok = [r for r in at_size if _is_atlas(r) and _ok(r)]
        best = max(atlas_ok, key=lambda r: _number(r["images_per_s"]) or 0, default=None)
        atlas_cell = f"{best['model']} ({best['backend']})" if best else "none ran"
        atlas_ips = _number(best["images_per_s"]) if best else None
        for base in (r for r in at_size if not _is_atlas(r)):
            paper = PAPER_RELATIVE.get(img, {}).get(str(base["model"]), "")
            base_ips = _number(base.get("images_per_s")) if _ok(base) else None
            ratio = _fmt(atlas_ips / base_ips) if atlas_ips and base_ips else ""
            cells = [
                str(img),
                atlas_cell,
                _fmt(atlas_ips) if atlas_ips else "",
                str(base["model"]),
                _fmt(base_ips) if base_ips else "",
                ratio,
                paper,
                str(base.get("status", "")).replace("|", "/"),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def backends_table(train_rows: Iterable[Row]) -> list[str]:
    """Table 2 of the module docstring: per Atlas model and size, each backend's images/s and its ratio to sdpa."""
    rows = [r for r in train_rows if _is_atlas(r)]
    backends = list(dict.fromkeys(str(r["backend"]) for r in rows))
    lines = [
        "| model | img | " + " | ".join(f"{b} img/s" for b in backends) + " | fastest | others / sdpa |",
        "|---|---|" + "---|" * len(backends) + "---|---|",
    ]
    for model, img in dict.fromkeys((str(r["model"]), int(r["img"])) for r in rows):
        by_backend = {str(r["backend"]): r for r in rows if str(r["model"]) == model and int(r["img"]) == img}
        speed = {b: _number(r["images_per_s"]) for b, r in by_backend.items() if _ok(r)}
        cells = []
        for b in backends:
            row = by_backend.get(b)
            if row is None:
                cells.append("")
            elif b in speed:
                cells.append(_fmt(speed[b] or 0))
            else:
                cells.append(str(row.get("status", "")).split(":")[0])  # oom / skipped / error / unavailable
        fastest = max(speed, key=lambda b: speed[b] or 0, default="")
        sdpa = speed.get("sdpa")
        ratios = ", ".join(f"{b} {_fmt((v or 0) / sdpa)}x" for b, v in speed.items() if b != "sdpa") if sdpa else ""
        lines.append(f"| {model} | {img} | " + " | ".join(cells) + f" | {fastest} | {ratios} |")
    return lines


def large_table(large_rows: Iterable[Row]) -> list[str]:
    """Table 3 of the module docstring."""
    lines = [
        "| kind | model | img | checkpointing | step_ms | peak memory (GiB) | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in large_rows:
        step, peak = _number(r.get("step_ms")), _number(r.get("peak_mem_mb"))
        cells = [
            str(r.get("kind", "")),
            str(r.get("model", "")),
            str(r.get("img", "")),
            "" if r.get("checkpointing") in (None, "") else str(r["checkpointing"]),
            _fmt(step) if step is not None else "",
            _fmt(peak / 1024) if peak is not None else "",
            str(r.get("status", "")).replace("|", "/"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def comparison_section(train_rows: Iterable[Row], large_rows: Iterable[Row]) -> list[str]:
    """The markdown section ``gpu_suite.py`` appends to ``summary.md``: the three tables with their headings."""
    train = [r for r in train_rows if r.get("img") not in (None, "")]  # a phase skipped whole has no sizes
    large = [r for r in large_rows if r.get("img") not in (None, "")]
    lines = ["## vs the paper", ""]
    if train:
        lines += [
            (
                "Baseline time per image / Atlas's (its fastest backend), one training step in the suite's dtype; "
                "the paper's are whole runs on 8xH100 (`benchmarks/gpu_vs_paper.py` says how they compare)."
            ),
            "",
            *atlas_vs_baselines(train),
            "",
            "### backends (what `auto` should pick on this device)",
            "",
            *backends_table(train),
            "",
        ]
    if large:
        lines += ["### large", "", *large_table(large), ""]
    return lines


def _read(path: Path) -> list[dict[str, str]]:
    from atlas_vision.bench.report import read_csv  # no torch import

    return read_csv(path) if path.exists() else []


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print(f"usage: python benchmarks/gpu_vs_paper.py RESULT_DIR (a gpu_suite.py output folder); got {argv}")
        return 2
    folder = Path(argv[0])
    train, large = _read(folder / "train.csv"), _read(folder / "large.csv")
    if not train and not large:
        print(f"{folder}: no train.csv or large.csv (a folder benchmarks/gpu_suite.py wrote holds them)")
        return 2
    print("\n".join(comparison_section(train, large)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
