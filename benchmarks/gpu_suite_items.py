"""The measurements of ``benchmarks/gpu_suite.py``, run in a child process per phase.

``python benchmarks/gpu_suite_items.py PHASE PLAN_JSON ROWS_JSONL`` runs the items of one phase (``contract``,
``train`` or ``large``) in order and appends one JSON row per item to ``ROWS_JSONL`` as soon as it is measured, so a
phase killed at its deadline keeps what it measured.  Every item has an estimated cost; an item that would start
after the phase deadline minus its estimate is recorded as ``skipped: time budget spent`` instead of being run.
An out-of-memory error is a result (``status = oom``), any other error a row with ``status = error: ...``.

Numbers come from the library's benchmark code: :func:`atlas_vision.bench.speed.measure_train_step` (images/s and
peak memory of forward + loss + backward + AdamW step, batch halved on OOM) and
:mod:`atlas_vision.bench.timing` (CUDA-synchronised timing, ``torch.cuda.max_memory_allocated`` peaks).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
import torch

import atlas_vision  # noqa: F401  (registers the Atlas models with timm)
from atlas_vision.bench.speed import autocast, measure_train_step
from atlas_vision.bench.timing import is_out_of_memory, measure_peak_memory, time_fn
from atlas_vision.ops import BACKENDS, Backend, Pass

NUM_CLASSES = 100  # HR-IN100, as in `atlas-vision bench models`


def backend_unavailable(backend: str, device: torch.device, needs_grad: bool) -> str | None:
    """``None`` if attention backend ``backend`` can run both passes on ``device`` (with a backward if
    ``needs_grad``), else why not, as its declaration says (e.g. ``flex`` has no CPU backward)."""
    valid = [b.value for b in Backend]
    if backend not in valid:
        return f"backend {backend!r} does not exist in this build (valid: {valid})"
    if backend == Backend.AUTO.value:
        return None
    spec = next(s for s in BACKENDS if s.backend.value == backend)
    q = torch.zeros(1, 1, 1, 1, 8, device=device)  # [B, h, w, n, d]: only device, dtype and head dim are read
    reasons = sorted({r for p in Pass for r in spec.not_supported_reasons(p, q, needs_grad)})
    return f"backend {backend!r}: {'; '.join(reasons)}" if reasons else None


def model_kwargs(model: str, img: int, backend: str) -> dict[str, Any]:
    """``timm.create_model`` arguments that let ``model`` run at ``img`` px (and pick our attention backend)."""
    if model.startswith(("atlas", "test_atlas")):
        return {"backend": backend}
    if model.startswith("vit_"):
        return {"dynamic_img_size": True}
    if model.startswith("swin"):
        return {"img_size": (img, img)}  # the issue: Swin set to the size (window grid and masks built for it)
    return {}


def _build(model: str, img: int, backend: str) -> torch.nn.Module:
    return timm.create_model(model, pretrained=False, num_classes=NUM_CLASSES, **model_kwargs(model, img, backend))


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        import gc

        gc.collect()
        torch.cuda.empty_cache()


def train_item(item: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """One training step measurement: ``{model, img, backend, batch, warmup, iters, checkpointing}``."""
    atlas = item["model"].startswith(("atlas", "test_atlas"))
    if atlas and (reason := backend_unavailable(item["backend"], device, needs_grad=True)):
        return {"status": f"unavailable: {reason}"}

    def make() -> torch.nn.Module:
        model = _build(item["model"], item["img"], item["backend"])
        if item.get("checkpointing"):
            model.set_grad_checkpointing(True)
        return model

    result = measure_train_step(
        make,
        (item["img"], item["img"]),
        3,
        NUM_CLASSES,
        item["batch"],
        device,
        item["dtype"],
        item["warmup"],
        item["iters"],
    )
    return result.row()


def infer_item(item: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Inference (no grad, autocast) of one batch: ``{model, img, backend, batch, warmup, iters}``."""
    if reason := backend_unavailable(item["backend"], device, needs_grad=False):
        return {"status": f"unavailable: {reason}"}
    model = _build(item["model"], item["img"], item["backend"]).to(device).eval()
    images = torch.randn(item["batch"], 3, item["img"], item["img"], device=device)

    def run() -> None:
        with torch.no_grad(), autocast(device, item["dtype"]):
            model(images)

    try:
        timing = time_fn(run, device, item["warmup"], item["iters"])
        memory = measure_peak_memory(run, device)
    except (RuntimeError, MemoryError) as err:
        if not is_out_of_memory(err):
            raise
        del model, images
        _free(device)
        return {"batch": item["batch"], "status": "oom"}
    return {
        "batch": item["batch"],
        "step_ms": timing.median_ms,
        "images_per_s": item["batch"] / (timing.median_ms / 1e3),
        "peak_mem_mb": memory.peak_mb,
        "peak_mem_method": memory.method,
        "status": "ok",
    }


def contract_item(item: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The model contract on ``device`` for one Atlas variant, backend and input shape ``[B, 3, H, W]``:
    output ``[B, classes]``, finite; every parameter gets a finite gradient; fp32 output equal to the CPU fp32
    output of the same weights; bf16-autocast output close to it.  Returns the errors measured and ``status``."""
    if reason := backend_unavailable(item["backend"], device, needs_grad=True):
        return {"status": f"unavailable: {reason}"}
    b, h, w = item["shape"]
    torch.manual_seed(0)
    cpu_model = _build(item["model"], max(h, w), "sdpa").eval()  # CPU fp32 reference (sdpa = plain SDPA math)
    model = _build(item["model"], max(h, w), item["backend"]).eval()
    model.load_state_dict(cpu_model.state_dict())
    model.to(device)
    x = torch.randn(b, 3, h, w)
    with torch.no_grad():
        expected = cpu_model(x).double()
    x_dev = x.to(device).requires_grad_()
    out = model(x_dev)
    out.float().square().mean().backward()
    problems = []
    if tuple(out.shape) != (b, NUM_CLASSES):
        problems.append(f"output shape {tuple(out.shape)} != {(b, NUM_CLASSES)}")
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    if no_grad:
        problems.append(f"{len(no_grad)} parameters without a finite gradient, e.g. {no_grad[:3]}")
    fp32_err = (out.detach().double().cpu() - expected).abs().max().item()
    with torch.no_grad(), autocast(device, "bf16"):
        out_bf16 = model(x_dev.detach())
    bf16_err = (out_bf16.double().cpu() - expected).abs().max().item()
    scale = expected.abs().max().item() + 1e-6
    if not fp32_err <= 1e-3 * scale + 1e-4:
        problems.append(f"fp32 output differs from CPU by {fp32_err:.2e} (scale {scale:.2e})")
    if not bf16_err <= 0.1 * scale + 1e-2:
        problems.append(f"bf16 output differs from CPU fp32 by {bf16_err:.2e} (scale {scale:.2e})")
    return {
        "max_abs_err_fp32": fp32_err,
        "max_abs_err_bf16": bf16_err,
        "output_scale": scale,
        "status": "ok" if not problems else "fail: " + "; ".join(problems),
    }


RUNNERS: dict[str, Callable[[dict[str, Any], torch.device], dict[str, Any]]] = {
    "train": train_item,
    "infer": infer_item,
    "contract": contract_item,
}


def run_phase(plan: dict[str, Any], rows_path: Path) -> None:
    """Run ``plan["items"]`` on ``plan["device"]`` until ``plan["deadline_s"]`` (seconds from now)."""
    device = torch.device(plan["device"])
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # contract checks compare in true fp32
        torch.backends.cudnn.allow_tf32 = False
    if plan.get("threads"):
        torch.set_num_threads(plan["threads"])
    deadline = time.monotonic() + plan["deadline_s"]
    with rows_path.open("a") as out:
        for item in plan["items"]:
            start = time.monotonic()
            if start + item["est_s"] > deadline:
                row = {
                    "status": f"skipped: time budget spent ({deadline - start:.0f} s left, needs ~{item['est_s']} s)"
                }
            else:
                try:
                    row = RUNNERS[item["kind"]](item, device)
                except Exception as err:  # noqa: BLE001 - record and go on with the next item
                    if is_out_of_memory(err):
                        row = {"status": "oom"}
                    else:
                        row = {"status": f"error: {type(err).__name__}: {err}"[:300]}
                        traceback.print_exc()
                _free(device)
            row = {**item, **row, "wall_s": round(time.monotonic() - start, 2)}
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(f"[{plan['phase']}] {_label(item)}: {row['status']} ({row['wall_s']} s)", flush=True)


def _label(item: dict[str, Any]) -> str:
    parts = [item["kind"], item["model"], f"{item.get('img', item.get('shape'))}"]
    if item["model"].startswith(("atlas", "test_atlas")):
        parts.append(item["backend"])
    return " ".join(str(p) for p in parts)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("contract", "train", "large"):
        sys.exit(
            f"usage: python {sys.argv[0]} PHASE PLAN_JSON ROWS_JSONL, PHASE one of contract, train, large; got "
            f"{sys.argv[1:]} (a child of benchmarks/gpu_suite.py, which writes the plan: run that one)"
        )
    run_phase(json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[3]))
