"""``atlas-vision bench models``: whole backbones -- training-step images/s and peak memory vs resolution.

Models are timm names. Atlas variants are registered by ``import atlas_vision``; the baselines come from timm
(``vit_*`` with ``dynamic_img_size=True``, ``swin_*`` with ``strict_img_size=False`` so one 224-configured model runs
at any size, ``convnext_*``), or from optional packages where they install and run here: ``faster_vit_*_any_res``
(package ``fastervit``, built per resolution with ``resolution=[h, w]``), ``mamba_vision_*`` (package
``mambavision``, which needs the CUDA-only ``mamba-ssm``). LongViT has no installable package: it is reported as
unavailable. A model that cannot be built gets a row with ``status = "unavailable: <reason>"``; a resolution at which
not even batch 1 fits gets ``status = "oom"``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from torch import nn

from atlas_vision.bench.common import BenchSettings
from atlas_vision.bench.plots import plot_throughput_vs_resolution
from atlas_vision.bench.report import ENV_COLUMNS, env_metadata, write_csv
from atlas_vision.bench.speed import measure_train_step
from atlas_vision.ops import Size2D

MODEL_COLUMNS: tuple[str, ...] = (
    "model",
    "resolution",
    "img_h",
    "img_w",
    "requested_batch",
    "batch",
    "step_ms",
    "images_per_s",
    "peak_mem_mb",
    "peak_mem_method",
    "params",
    "status",
    *ENV_COLUMNS,
)
# the paper's baselines (Table 6 / Figure 1) at Base size: the default on CUDA
DEFAULT_MODELS: tuple[str, ...] = (
    "atlas_small",
    "atlas_base",
    "vit_base_patch16_224",
    "swin_base_patch4_window7_224",
    "convnext_base",
    "faster_vit_4_any_res",
    "mamba_vision_B",
    "longvit",
)
# the same families at their smallest sizes: the default on CPU (FasterViT-4 alone has 425M parameters)
DEFAULT_MODELS_CPU: tuple[str, ...] = (
    "atlas_tiny",
    "vit_tiny_patch16_224",
    "swin_tiny_patch4_window7_224",
    "convnext_atto",
    "faster_vit_0_any_res",
    "mamba_vision_T",
    "longvit",
)
# model-name prefix -> optional package that registers it with timm on import
OPTIONAL_PACKAGES: dict[str, str] = {"faster_vit": "fastervit", "mamba_vision": "mambavision"}
NUM_CLASSES = 100  # HR-IN100


def model_kwargs(name: str, image_hw: Size2D) -> dict[str, Any]:
    """Extra ``timm.create_model`` arguments that let a baseline run at ``image_hw``."""
    if name.startswith("vit_"):
        return {"dynamic_img_size": True}
    if name.startswith("swin"):
        return {"strict_img_size": False}
    if name.startswith("faster_vit") and name.endswith("any_res"):
        return {"resolution": [image_hw[0], image_hw[1]]}
    return {}


def availability(name: str) -> str | None:
    """``None`` if ``name`` can be built here, else the reason it cannot (imports optional packages as needed)."""
    import timm

    import atlas_vision  # noqa: F401  (registers the Atlas models)

    if name == "longvit":
        return "LongViT has no installable package (microsoft/unilm source only)"
    if timm.is_model(name):
        return None
    for prefix, package in OPTIONAL_PACKAGES.items():
        if name.startswith(prefix):
            try:
                importlib.import_module(package)
            except Exception as err:  # noqa: BLE001 - any import failure makes the baseline unavailable
                return f"optional package {package!r} does not import here ({type(err).__name__}: {err})"[:200]
            return None if timm.is_model(name) else f"{package} does not register {name!r}"
    return f"unknown timm model {name!r}"


def _builder(name: str, image_hw: Size2D) -> Callable[[], nn.Module]:
    import timm

    return lambda: timm.create_model(name, pretrained=False, num_classes=NUM_CLASSES, **model_kwargs(name, image_hw))


def run_models(
    models: tuple[str, ...],
    resolutions: tuple[Size2D, ...],
    batch: int,
    settings: BenchSettings,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Every model x resolution: one row; writes ``models.csv`` and ``models_throughput.png`` to ``settings.out``."""
    env = env_metadata(settings.device, settings.dtype, settings.seeds[0])
    rows: list[dict[str, Any]] = []
    for name in models:
        reason = availability(name)
        for res in resolutions:
            base = {
                "model": name,
                "resolution": res[0] if res[0] == res[1] else f"{res[0]}x{res[1]}",
                "img_h": res[0],
                "img_w": res[1],
                "requested_batch": batch,
                **env,
            }
            if reason is not None:
                rows.append({**base, "batch": 0, "status": f"unavailable: {reason}"})
                log(f"[models] {name:<32} {res[0]}x{res[1]}: unavailable ({reason})")
                continue
            make = _builder(name, res)
            try:
                params = sum(p.numel() for p in make().parameters())
            except Exception as err:  # noqa: BLE001 - report, keep benchmarking the others
                rows.append({**base, "batch": 0, "status": f"unavailable: {type(err).__name__}: {err}"[:200]})
                log(f"[models] {name:<32} {res[0]}x{res[1]}: cannot build ({err})")
                continue
            result = measure_train_step(
                make, res, 3, NUM_CLASSES, batch, settings.device, settings.dtype, settings.warmup, settings.iters
            )
            rows.append({**base, **result.row(), "params": params})
            ips = "n/a" if result.images_per_s is None else f"{result.images_per_s:.2f}"
            mem = "n/a" if result.peak_mem_mb is None else f"{result.peak_mem_mb:.1f}"
            log(
                f"[models] {name:<32} {res[0]}x{res[1]}: batch {result.batch}  {ips} img/s  peak {mem} MiB  "
                f"[{result.status}]"
            )
    write_csv(rows, settings.out / "models.csv", MODEL_COLUMNS)
    plot_rows = [r for r in rows if isinstance(r["resolution"], int)]
    plot_throughput_vs_resolution(
        plot_rows, settings.out / "models_throughput.png", f"training step ({settings.device.type}, {settings.dtype})"
    )
    return rows
