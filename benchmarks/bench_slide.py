"""Whole-slide benchmarks for docs/benchmarks.md: `slide embed` throughput and peak memory against slide size, and
the largest image exact mode processes.

Each embed runs as its own ``python -m atlas_vision slide embed`` subprocess, so the peak resident memory reported
(``ru_maxrss`` from ``os.wait4``) is that run's alone. Slides are synthetic (``write_synthetic_slide``), written
once into ``--work`` (reused by later runs).

    # throughput / peak RSS vs size; --tissue all: the whole slide is tissue (processed area = slide area)
    python benchmarks/bench_slide.py scaling --model test_atlas --sizes 4096 8192 16384 --tissue all
    # sparse tissue on large slides (Otsu): cost follows the tissue area, memory stays flat in slide size
    python benchmarks/bench_slide.py scaling --model test_atlas --sizes 32768 65536 --coverage 0.03
    # exact whole-image mode: one forward per size, bounded by --timeout seconds each
    python benchmarks/bench_slide.py exact --model atlas_small --sizes 2048 4096 8192 --timeout 600

Rows are appended to ``--csv`` and printed as markdown.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = str(REPO / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _synthetic(work: Path, size: int, coverage: float, seed: int = 0) -> tuple[Path, float]:
    """The synthetic slide of ``size x size`` px (written once) and the seconds it took to write (0 if reused)."""
    sys.path.insert(0, str(REPO / "src"))
    from atlas_vision.slide import TissueLayout, write_synthetic_slide

    path = work / f"synthetic_{size}_{coverage:g}.tif"
    if path.is_file():
        return path, 0.0
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    layout = TissueLayout.random(size, size, seed=seed, num_pieces=6, coverage=coverage)
    write_synthetic_slide(path.with_suffix(".part.tif"), size, size, layout=layout, seed=seed)
    path.with_suffix(".part.tif").rename(path)
    return path, time.perf_counter() - start


def _popen_wait(cmd: list[str], threads: int, timeout: float) -> tuple[int, float, float, str]:
    """Run ``cmd`` and reap it with ``os.wait4`` (so its own peak RSS is known); kill it after ``timeout``."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=_env(threads), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    chunks: list[str] = []

    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    deadline = start + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join(timeout=10)
    return proc.returncode, time.perf_counter() - start, usage.ru_maxrss / 1024, "".join(chunks)


def _append_csv(path: Path, row: dict) -> None:
    new = not path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def _common_row(args) -> dict:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()} {os.cpu_count()} cores (shared)",
        "threads": args.threads,
        "model": args.model,
        "loadavg_1min": round(os.getloadavg()[0], 2),  # other jobs on the shared machine (at the row's end)
    }


def scaling(args) -> None:
    print(
        "| slide px | tissue setting | regions done / total | processed MP | embed s | MP/s | wall s | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        slide, synth_s = _synthetic(args.work, size, args.coverage)
        out = args.work / f"run_{args.model}_{size}_{args.coverage:g}_{args.tissue}"
        shutil.rmtree(out, ignore_errors=True)
        embed = [
            str(slide),
            "--out",
            str(out),
            "--model",
            args.model,
            "--region-size",
            str(args.region_size),
            "--overlap",
            str(args.overlap),
            "--tissue",
            args.tissue,
            "--batch-size",
            str(args.batch_size),
            "--read-threads",
            "2",
            "--device",
            "cpu",
        ]
        cmd = [sys.executable, "-m", "atlas_vision", "slide", "embed", *embed]
        code, wall, rss, output = _popen_wait(cmd, args.threads, args.timeout)
        if code != 0:
            print(f"| {size}² | failed (exit {code}) | | | | | {wall:.0f} | {rss:.0f} |")
            print(output[-2000:], file=sys.stderr)
            continue
        summary = json.loads((out / slide.stem / "slide.json").read_text())
        ranks = summary["timings"]["ranks"][0]
        sys.path.insert(0, str(REPO / "src"))
        from atlas_vision.slide import open_features

        feats = open_features(out / slide.stem)
        stride0 = feats.strides[0]
        processed_mp = float(feats.tissue_mask(0).sum()) * stride0 * stride0 / 1e6
        row = {
            **_common_row(args),
            "slide_px": size,
            "tissue": args.tissue,
            "coverage": args.coverage,
            "region_size": args.region_size,
            "overlap": args.overlap,
            "regions_done": summary["regions"]["done"],
            "regions_total": summary["regions"]["total"],
            "processed_mp": round(processed_mp, 1),
            "embed_s": ranks["total_s"],
            "compute_s": ranks["compute_s"],
            "read_wait_s": ranks["read_wait_s"],
            "write_s": ranks["write_s"],
            "mp_per_s": round(processed_mp / ranks["total_s"], 3),
            "wall_s": round(wall, 1),
            "peak_rss_mib": round(rss),
            "synth_s": round(synth_s, 1),
        }
        _append_csv(args.csv, row)
        setting = "all" if args.tissue == "all" else f"Otsu, {args.coverage:.0%} cover"
        print(
            f"| {size:,}² | {setting} | {row['regions_done']} / {row['regions_total']} | {processed_mp:,.0f} | "
            f"{ranks['total_s']:.0f} (read wait {ranks['read_wait_s']:.1f}) | {row['mp_per_s']:.2f} | {wall:.0f} | "
            f"{rss:,.0f} |",
            flush=True,
        )
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)


def exact(args) -> None:
    print("| model | image px | tokens | result | forward s | wall s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    base = max(args.sizes)
    slide, _ = _synthetic(args.work, base, 0.6)
    for size in sorted(args.sizes):
        level = (base // size).bit_length() - 1  # the synthetic pyramid halves per level
        out = args.work / f"exact_{args.model}_{size}"
        shutil.rmtree(out, ignore_errors=True)
        embed = [
            str(slide),
            "--out",
            str(out),
            "--model",
            args.model,
            "--exact",
            "--level",
            str(level),
            "--stem-tile",
            str(args.stem_tile),
            "--device",
            "cpu",
            "--thumbnail-size",
            "512",
        ]
        cmd = [sys.executable, "-m", "atlas_vision", "slide", "embed", *embed]
        code, wall, rss, output = _popen_wait(cmd, args.threads, args.timeout)
        tokens = (size // 16) ** 2
        if code == 0:
            summary = json.loads((out / slide.stem / "slide.json").read_text())
            forward_s = summary["timings"]["ranks"][0]["compute_s"]
            result = "ok"
        else:
            forward_s = float("nan")
            result = "timeout" if wall >= args.timeout else f"failed (exit {code})"
            print(output[-1500:], file=sys.stderr)
        row = {
            **_common_row(args),
            "image_px": size,
            "tokens": tokens,
            "result": result,
            "forward_s": forward_s,
            "wall_s": round(wall, 1),
            "peak_rss_mib": round(rss),
            "stem_tile": args.stem_tile,
        }
        _append_csv(args.csv, row)
        print(
            f"| {args.model} | {size:,}² | {tokens:,} | {result} | {forward_s:.0f} | {wall:.0f} | {rss:,.0f} |",
            flush=True,
        )
        shutil.rmtree(out, ignore_errors=True)
        if code != 0:
            break  # larger sizes will not fit the bound either


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("scaling", "exact"))
    parser.add_argument("--model", default="test_atlas")
    parser.add_argument("--sizes", type=int, nargs="+", required=True)
    parser.add_argument("--tissue", default="auto", help="scaling: auto (Otsu) or all")
    parser.add_argument("--coverage", type=float, default=0.3, help="scaling: tissue fraction of the synthetic slide")
    parser.add_argument("--region-size", type=int, default=2048)
    parser.add_argument("--overlap", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--stem-tile", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run (default 1)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_slide"))
    parser.add_argument("--csv", type=Path, default=REPO / "docs" / "bench-slide" / "slide.csv")
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    args = parser.parse_args()
    args.csv = args.csv.with_name(f"{args.mode}.csv") if args.csv.name == "slide.csv" else args.csv
    {"scaling": scaling, "exact": exact}[args.mode](args)


if __name__ == "__main__":
    main()
