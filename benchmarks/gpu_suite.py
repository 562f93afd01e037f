"""One-shot GPU measurement suite (issue 11, part 3): ``python benchmarks/gpu_suite.py OUT_DIR``.

On one H100/H200 it runs, within ``--budget-s`` (default 480 s = 8 minutes, warm-ups included):

1. ``tests``    -- the CUDA test subset: ``TORCH_DEVICE=cuda pytest tests/test_ops.py tests/test_flex.py -k "device or
   cuda"`` (every fast path, ``flex`` included, forward and backward vs the float64 reference in fp32 and bf16);
2. ``contract`` -- the model contract on the device (output shape, every parameter gets a gradient, fp32 equal to
   the CPU output of the same weights, bf16 close) for each attention backend, on awkward input shapes;
3. ``train``    -- training-step images/s and peak memory in bf16: ``atlas_base`` 1024 px, ``atlas_small``
   2048 / 4096 px for every backend (``sdpa``, ``split`` = the pure-PyTorch fallback on GPU, ``flex`` when this build
   has it), and timm ``vit_base_patch16_224`` (``dynamic_img_size``), ``convnext_base``,
   ``swin_base_patch4_window7_224`` (``img_size`` set) at the same sizes; OOM is a recorded result;
4. ``large``    -- ``atlas_base`` training step at 8192 px (gradient checkpointing if the plain step runs out of
   memory) and inference at 16384 px (1M tokens), with peak memory;
5. ``mixers``   -- ``atlas-vision bench mixers --speed-only`` up to 64k tokens (its own CSV and PNG).

Each phase runs in a child process with a deadline (its share of the budget, capped by what is left); inside a phase
every item checks that its estimated cost still fits before it starts, else it is recorded as skipped with the
reason.  A child killed at its deadline keeps the rows it wrote.  Results: ``OUT_DIR/{tests,contract,train,large}.csv``,
``OUT_DIR/mixers/`` and ``OUT_DIR/summary.md`` (device, versions, every row, what was skipped and why).

``--device cpu --smoke`` runs tiny sizes of every phase in well under a minute (tested by ``tests/test_gpu_suite.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ITEMS_SCRIPT = Path(__file__).resolve().parent / "gpu_suite_items.py"
PHASES: tuple[str, ...] = ("tests", "contract", "train", "large", "mixers")
BACKENDS: tuple[str, ...] = ("sdpa", "split", "flex")
# share of the total budget each phase may use (the unused part of a phase is left to the later ones). The tests
# get the largest share after the timings because they are the correctness evidence (issue 11 part 2 asks for flex's
# forward and backward on CUDA) and each new (dtype, head dim) of theirs compiles FlexAttention's forward and backward
# kernels: one first inductor compile of flex took 43-49 s on CPU (docs/benchmarks.md section 7), and with the old
# 15 % (72 s of the default 480 s, pytest's start included) the CUDA subset would most likely have been cut after its
# first flex tests. A train phase that is cut loses the rows it measures last, the least important (split, flex).
PHASE_SHARE: dict[str, float] = {"tests": 0.30, "contract": 0.06, "train": 0.38, "large": 0.14, "mixers": 0.12}
# the tests that run on TORCH_DEVICE: test_ops's fast paths (sdpa, split, flex on CUDA) and test_flex's CUDA test
CUDA_TESTS: tuple[str, ...] = ("tests/test_ops.py", "tests/test_flex.py")
CUDA_TESTS_SELECT = "device or cuda"
BASELINES: tuple[str, ...] = ("vit_base_patch16_224", "convnext_base", "swin_base_patch4_window7_224")
ROW_COLUMNS: tuple[str, ...] = (
    "phase",
    "kind",
    "model",
    "img",
    "shape",
    "backend",
    "checkpointing",
    "requested_batch",
    "batch",
    "step_ms",
    "images_per_s",
    "peak_mem_mb",
    "peak_mem_method",
    "max_abs_err_fp32",
    "max_abs_err_bf16",
    "output_scale",
    "status",
    "wall_s",
)


def build_plan(phase: str, backends: tuple[str, ...], smoke: bool, dtype: str) -> list[dict[str, Any]]:
    """The items of ``phase`` (``contract``, ``train`` or ``large``), in the order they run.

    Each item carries ``est_s``, a generous estimate of its cost on an H100 (on CPU in smoke mode), which decides
    whether it still fits before the phase deadline.
    """
    if phase == "contract":
        model = "test_atlas"
        shapes = [(1, 61, 95)] if smoke else [(1, 61, 95), (3, 64, 64), (2, 130, 70)]
        return [
            {"kind": "contract", "model": model, "shape": list(s), "backend": b, "est_s": 2 if smoke else 5}
            for b in backends
            for s in shapes
        ]
    if phase == "train":
        if smoke:
            atlas = [("atlas_tiny", 64, 2)]
            baselines: tuple[str, ...] = ("vit_tiny_patch16_224",)
            warmup, iters = 0, 1
        else:
            atlas = [("atlas_base", 1024, 16), ("atlas_small", 2048, 4), ("atlas_small", 4096, 1)]
            baselines = BASELINES
            warmup, iters = 2, 5
        # the comparison first: at each size our default backend, then the baselines at that size; then the other
        # backends (split, then flex, whose first call at a size also compiles its kernels), so a budget cut
        # drops the least important rows
        first, others = backends[:1], backends[1:]
        items = []
        for m, img, batch in atlas:  # the baselines at each Atlas size and batch
            items += [{"model": m, "img": img, "backend": b, "requested_batch": batch} for b in first]
            items += [{"model": bm, "img": img, "backend": "", "requested_batch": batch} for bm in baselines]
        for b in others:
            items += [{"model": m, "img": img, "backend": b, "requested_batch": batch} for m, img, batch in atlas]
        for item in items:
            item.update(kind="train", batch=item["requested_batch"], dtype=dtype, warmup=warmup, iters=iters)
            compile_s = 30 if item["backend"] == "flex" else 0
            item["est_s"] = 3 if smoke else (25 if item["img"] >= 4096 else 15) + compile_s
        return items
    if phase == "large":
        train_img, infer_img = (128, 256) if smoke else (8192, 16384)
        # batch 1: the smoke model needs a LayerNorm head (atlas_tiny's BatchNorm head refuses 1 image in training)
        model = "test_atlas" if smoke else "atlas_base"
        common = {"model": model, "backend": "sdpa", "requested_batch": 1, "batch": 1, "dtype": dtype}
        return [
            {
                **common,
                "kind": "train",
                "img": train_img,
                "checkpointing": False,
                "warmup": 1,
                "iters": 1,
                "est_s": 3 if smoke else 30,
            },
            {
                **common,
                "kind": "train",
                "img": train_img,
                "checkpointing": True,
                "warmup": 1,
                "iters": 1,
                "est_s": 3 if smoke else 40,
            },
            {**common, "kind": "infer", "img": infer_img, "warmup": 1, "iters": 2, "est_s": 3 if smoke else 30},
        ]
    raise ValueError(f"phase {phase!r} has no item plan")


def _run_child(cmd: list[str], timeout_s: float, log_path: Path, env: dict[str, str] | None = None) -> str:
    """Run ``cmd`` with output to ``log_path``; returns ``ok``, ``exit N`` or ``timeout after T s``."""
    with log_path.open("w") as log:
        try:
            proc = subprocess.run(
                cmd, stdout=log, stderr=subprocess.STDOUT, timeout=max(timeout_s, 1), env=env, cwd=REPO, check=False
            )
        except subprocess.TimeoutExpired:
            return f"timeout after {timeout_s:.0f} s"
    return "ok" if proc.returncode == 0 else f"exit {proc.returncode}"


def _child_env(device: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH", "")]))
    env["TORCH_DEVICE"] = device
    return env


def run_tests_phase(out: Path, device: str, smoke: bool, timeout_s: float) -> list[dict[str, Any]]:
    """The CUDA test subset (:data:`CUDA_TESTS`, ``-k`` :data:`CUDA_TESTS_SELECT`); in smoke mode only collected.

    Verbose, so a run killed at its deadline (the first flex calls compile kernels) still reports the tests that
    finished; the full output is ``OUT_DIR/tests.log``.
    """
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *CUDA_TESTS, "-k", CUDA_TESTS_SELECT]
    if smoke:
        cmd.append("--collect-only")
    start = time.monotonic()
    status = _run_child(cmd, timeout_s, out / "tests.log", _child_env(device))
    log = (out / "tests.log").read_text()
    last = log.strip().splitlines()[-1:] or [""]
    return [
        {
            "phase": "tests",
            "kind": "pytest-collect" if smoke else "pytest",
            "model": f"{' '.join(CUDA_TESTS)} -k '{CUDA_TESTS_SELECT}'",
            "status": f"{status}: {last[0][:200] if smoke else pytest_outcomes(log)}",
            "wall_s": round(time.monotonic() - start, 2),
        }
    ]


def pytest_outcomes(log: str) -> str:
    """``"N passed, M failed, ..."`` counted from the per-test lines of ``pytest -v`` output (so it also works for
    a run killed before pytest's own summary line), with the first failing tests named."""
    counts: dict[str, int] = {}
    failed = []
    for line in log.splitlines():
        found = re.search(r"\s(PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b", line) if "::" in line else None
        if found and not line.startswith(("FAILED ", "ERROR ")):  # not the short summary's repeats
            outcome = found.group(1).lower()
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome in ("failed", "error"):
                failed.append(line[: found.start()].strip())
    text = ", ".join(f"{n} {k}" for k, n in counts.items()) or "no test finished"
    return text + (f" ({'; '.join(failed[:3])})" if failed else "")


def run_items_phase(
    phase: str, out: Path, device: str, backends: tuple[str, ...], smoke: bool, dtype: str, timeout_s: float
) -> list[dict[str, Any]]:
    """Run one measurement phase in a child process (see ``gpu_suite_items.py``); rows in plan order."""
    items = build_plan(phase, backends, smoke, dtype)
    rows_path = out / f"{phase}.jsonl"
    rows_path.unlink(missing_ok=True)
    if phase == "large":  # the checkpointed step runs only if the plain one ran out of memory
        plain, checkpointed, infer = items
        _child_items(phase, [plain], out, device, timeout_s, rows_path)
        done = _read_rows(rows_path)
        if done and done[-1]["status"] == "oom":
            _child_items(phase, [checkpointed], out, device, timeout_s - done[-1]["wall_s"], rows_path)
        _child_items(
            phase, [infer], out, device, timeout_s - sum(r["wall_s"] for r in _read_rows(rows_path)), rows_path
        )
        return [{**r, "phase": phase} for r in _read_rows(rows_path)]
    _child_items(phase, items, out, device, timeout_s, rows_path)
    return [{**r, "phase": phase} for r in _read_rows(rows_path)]


def _child_items(
    phase: str, items: list[dict[str, Any]], out: Path, device: str, timeout_s: float, rows_path: Path
) -> str:
    plan_path = out / f"{phase}.plan.json"
    plan = {"phase": phase, "device": device, "deadline_s": max(timeout_s - 10, 1), "items": items}
    plan["threads"] = 2 if device == "cpu" else 0
    plan_path.write_text(json.dumps(plan))
    before = len(_read_rows(rows_path))
    status = _run_child(
        [sys.executable, str(ITEMS_SCRIPT), phase, str(plan_path), str(rows_path)],
        timeout_s,
        out / f"{phase}.log",
        _child_env(device),
    )
    done = len(_read_rows(rows_path)) - before
    if done < len(items):  # the child died or was killed at its deadline before these
        with rows_path.open("a") as f:
            for item in items[done:]:
                f.write(json.dumps({**item, "status": f"not run: phase {status}", "wall_s": 0.0}) + "\n")
    return status


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_mixers_phase(out: Path, device: str, smoke: bool, dtype: str, timeout_s: float) -> list[dict[str, Any]]:
    """``atlas-vision bench mixers --speed-only`` up to 64k tokens (CSV and PNG under ``OUT_DIR/mixers``)."""
    cmd = [sys.executable, "-m", "atlas_vision", "bench", "mixers", "--speed-only", "--device", device]
    cmd += ["--dtype", dtype, "--out", str(out / "mixers")]
    if smoke:
        cmd += ["--mixers", "window,msa", "--tokens", "64,256", "--dim", "32", "--heads", "2", "--depth", "1"]
        cmd += ["--window", "4", "--pool-stride", "2", "--warmup", "0", "--iters", "1"]
    else:
        cmd += ["--tokens", "1024,4096,16384,65536", "--warmup", "1", "--iters", "3"]
    start = time.monotonic()
    status = _run_child(cmd, timeout_s, out / "mixers.log", _child_env(device))
    return [
        {
            "phase": "mixers",
            "kind": "bench mixers --speed-only",
            "model": "all mixers",
            "status": f"{status} (rows in mixers/)",
            "wall_s": round(time.monotonic() - start, 2),
        }
    ]


def write_summary(out: Path, rows: list[dict[str, Any]], args: argparse.Namespace, total_s: float) -> None:
    """``summary.md``: the environment, then one table per phase, then the mixers CSV if it was written."""
    sys.path.insert(0, str(REPO / "src"))
    import torch
    from gpu_vs_paper import comparison_section  # this folder, on sys.path when run as a script

    from atlas_vision.bench.report import env_metadata, read_csv, write_csv

    env = env_metadata(torch.device(args.device), args.dtype, 0)
    lines = [
        "# GPU suite results",
        "",
        (
            f"`python benchmarks/gpu_suite.py {args.out_dir} --device {args.device} --budget-s {args.budget_s:g}"
            f"{' --smoke' if args.smoke else ''}` -- total {total_s:.0f} s of a {args.budget_s:g} s budget."
        ),
        "",
        " | ".join(f"{k}: {v}" for k, v in env.items()),
        "",
    ]
    for phase in PHASES:
        phase_rows = [r for r in rows if r["phase"] == phase]
        if not phase_rows:
            continue
        cols = [c for c in ROW_COLUMNS if c != "phase" and any(r.get(c) not in (None, "") for r in phase_rows)]
        lines += [f"## {phase}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in phase_rows]
        lines.append("")
        if phase != "mixers" and phase != "tests":
            write_csv(
                [{c: r.get(c) for c in ROW_COLUMNS} | env for r in phase_rows],
                out / f"{phase}.csv",
                (*ROW_COLUMNS, *env),
            )
    mixers_csv = next(iter(sorted((out / "mixers").glob("*.csv"))), None) if (out / "mixers").exists() else None
    if mixers_csv is not None:
        mrows = read_csv(mixers_csv)
        cols = [
            c for c in ("mixer", "tokens", "grid", "fwd_ms", "fwd_bwd_ms", "peak_mem_mb", "status") if c in mrows[0]
        ]
        lines += [f"### {mixers_csv.name}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_cell(r.get(c)) for c in cols) + " |" for r in mrows]
        lines.append("")
    lines += comparison_section([r for r in rows if r["phase"] == "train"], [r for r in rows if r["phase"] == "large"])
    tests_rows = [r for r in rows if r["phase"] == "tests"]
    if tests_rows:
        write_csv(
            [{c: r.get(c) for c in ROW_COLUMNS} | env for r in tests_rows], out / "tests.csv", (*ROW_COLUMNS, *env)
        )
    (out / "summary.md").write_text("\n".join(lines))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "/")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("out_dir", help="output directory (created)")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes of every phase (seconds; for CI on CPU)")
    p.add_argument("--budget-s", type=float, default=480.0, help="total time budget in seconds (default 480)")
    p.add_argument("--backends", default=",".join(BACKENDS), help="our attention backends (default sdpa,split,flex)")
    p.add_argument("--phases", default=",".join(PHASES), help=f"phases to run (default {','.join(PHASES)})")
    p.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"), help="autocast dtype (default bf16)")
    args = p.parse_args(argv)
    args.backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    args.phases = tuple(x.strip() for x in args.phases.split(",") if x.strip())
    bad = [x for x in args.phases if x not in PHASES]
    if bad or not args.phases:
        p.error(f"--phases: unknown {bad or args.phases}; choose from {', '.join(PHASES)}")
    if args.budget_s <= 0:
        p.error(f"--budget-s must be > 0, got {args.budget_s}")
    if not (args.device == "cpu" or args.device == "cuda" or args.device.startswith("cuda:")):
        p.error(f"--device must be cuda, cuda:N or cpu, got {args.device!r}")
    if not args.backends:
        p.error("--backends: give at least one of sdpa, split, flex")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    deadline = start + args.budget_s
    rows: list[dict[str, Any]] = []
    for phase in args.phases:
        left = deadline - time.monotonic()
        later = sum(PHASE_SHARE[p] for p in args.phases[args.phases.index(phase) :])
        timeout = left * PHASE_SHARE[phase] / later  # this phase's share of what is left
        if left < 5:
            rows.append({"phase": phase, "kind": phase, "status": f"skipped: time budget spent ({left:.0f} s left)"})
            continue
        print(f"== {phase}: up to {timeout:.0f} s", flush=True)
        if phase == "tests":
            rows += run_tests_phase(out, args.device, args.smoke, timeout)
        elif phase == "mixers":
            rows += run_mixers_phase(out, args.device, args.smoke, args.dtype, timeout)
        else:
            rows += run_items_phase(phase, out, args.device, args.backends, args.smoke, args.dtype, timeout)
    total = time.monotonic() - start
    write_summary(out, rows, args, total)
    print(f"done in {total:.0f} s; {out / 'summary.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
