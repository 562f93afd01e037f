"""One ``slide embed`` run over a list of slides: plan (tissue, regions, empty ``features.zarr``), embed the regions
not yet done (sharded over ``torchrun`` ranks), finalize (attributes, PNGs, ``slide.json``).

Files of ``RUN_DIR/<slide_id>/``:

* ``plan.json``      - settings fingerprint, tissue regions; written (atomically) after the store is created;
* ``features.zarr``  - the feature grids (:mod:`atlas_vision.slide.store`);
* ``progress/``      - done / failed logs (:mod:`atlas_vision.slide.progress`);
* ``state/``         - thumbnail and tissue mask used by the PNGs;
* ``tissue.png``, ``heatmap.png``;
* ``slide.json``     - written last and atomically: a slide with a ``slide.json`` of the same settings is finished
  and skipped by later runs.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from atlas_vision.slide.embed import embed_regions
from atlas_vision.slide.errors import SlideError
from atlas_vision.slide.features import open_features
from atlas_vision.slide.inputs import expand_inputs, slide_id_of
from atlas_vision.slide.model import SlideModel, load_slide_model
from atlas_vision.slide.open import open_slide
from atlas_vision.slide.progress import ProgressLog, read_done, read_failed
from atlas_vision.slide.reader_pillow import DEFAULT_MAX_PIXELS
from atlas_vision.slide.regions import RegionGrid, check_region_geometry
from atlas_vision.slide.resolution import SlideView, select_resolution
from atlas_vision.slide.store import FeatureStore
from atlas_vision.slide.thumbnail import read_thumbnail
from atlas_vision.slide.tissue import detect_tissue

STITCH_RULE = (
    "centre crop: with step = region_size - overlap, region (row, col) reads target px "
    "[col*step - overlap/2, col*step + step + overlap/2) (same for rows; white outside the slide) and owns the "
    "cells of [col*step, (col+1)*step); every cell is written by exactly one region"
)
EXACT_CHUNK = 256  # feature cells per chunk side in exact mode (one writer, so chunks need not match regions)
EXACT_RULE = "exact: one forward pass over the whole image; conv stem run in tiles with receptive-field halos"


@dataclass
class EmbedOptions:
    model: str = "atlas_small"
    checkpoint: str | None = None
    num_classes: int | None = None
    seed: int = 0
    mpp: float | None = None
    level: int | None = None
    slide_mpp: float | None = None
    region_size: int = 2048
    overlap: int = 256
    batch_size: int = 1
    dtype: str = "float16"
    tissue: str = "auto"
    min_tissue: float = 0.0
    thumbnail_size: int = 1024
    read_threads: int = 2
    strict: bool = False
    backend: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS
    exact: bool = False
    stem_tile: int = 2048
    overwrite: bool = False
    heatmap_stage: int | None = None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _fingerprint(path: Path, reader, view: SlideView, sm: SlideModel, opt: EmbedOptions) -> dict:
    return {
        "slide": {"name": path.name, "bytes": path.stat().st_size, "dimensions": list(reader.dimensions)},
        "model": sm.name,
        "weights_sha256": sm.weights_sha256,
        "resolution": view.describe(),
        "mode": "exact" if opt.exact else "region",
        "region_size": None if opt.exact else opt.region_size,
        "overlap": None if opt.exact else opt.overlap,
        "dtype": opt.dtype,
        "tissue": str(opt.tissue),
        "min_tissue": opt.min_tissue,
        "thumbnail_size": opt.thumbnail_size,
    }


def _mismatch(old: dict, new: dict) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys)


def _grid(view: SlideView, opt: EmbedOptions) -> RegionGrid:
    w, h = view.size
    if opt.exact:  # the whole image is one region
        return RegionGrid(w, h, max(w, h), 0)
    return RegionGrid(w, h, opt.region_size, opt.overlap)


def _target_to_thumb(reader, view: SlideView, thumb: np.ndarray) -> tuple[float, float]:
    w0, h0 = reader.dimensions
    return thumb.shape[1] / w0 * view.downsample, thumb.shape[0] / h0 * view.downsample


def _plan(path: Path, slide_dir: Path, reader, view: SlideView, sm: SlideModel, opt: EmbedOptions, fp: dict) -> None:
    """Rank 0: tissue, region list, an empty ``features.zarr`` and ``plan.json`` (last)."""
    from PIL import Image

    from atlas_vision import __version__

    t0 = time.perf_counter()
    thumb, unreadable = read_thumbnail(reader, opt.thumbnail_size)
    tissue_arg = opt.tissue if opt.tissue in ("auto", "saturation", "grey", "all") else Path(opt.tissue)
    mask, tissue_info = detect_tissue(thumb, "all" if opt.exact else tissue_arg)
    if unreadable.any():  # plan those regions anyway: they are then reported as failed, not silently skipped
        print(
            f"atlas-vision slide: {path.name}: part of the overview could not be decoded (corrupt tiles)",
            file=sys.stderr,
        )
        mask = mask | unreadable
        tissue_info["unreadable_thumbnail_fraction"] = round(float(unreadable.mean()), 6)
    grid = _grid(view, opt)
    tissue = grid.tissue_regions(mask, _target_to_thumb(reader, view, thumb), opt.min_tissue)
    if not tissue:
        print(
            f"atlas-vision slide: no tissue found in {path.name} ({tissue_info}); writing an empty result "
            "(use --tissue all or a mask image to process it anyway)",
            file=sys.stderr,
        )
    state = slide_dir / "state"
    state.mkdir(parents=True, exist_ok=True)
    Image.fromarray(thumb).save(state / "thumbnail.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(state / "tissue_mask.png")
    attrs = {
        "format": "atlas-vision slide features",
        "format_version": 1,
        "slide": path.name,
        "slide_dimensions": list(reader.dimensions),
        "mpp": view.mpp,
        "level": view.level,
        "level_factor": view.factor,
        "downsample": view.downsample,
        "target_size": list(view.size),
        "mode": fp["mode"],
        "region_size": grid.region_size,
        "overlap": grid.overlap,
        "grid": {"rows": grid.rows, "cols": grid.cols, "step": grid.step},
        "strides": list(sm.strides),
        "channels": list(sm.channels),
        "dtype": opt.dtype,
        "model": sm.name,
        "weights_sha256": sm.weights_sha256,
        "library_version": __version__,
        "stitch_rule": EXACT_RULE if opt.exact else STITCH_RULE,
        "regions_done": [],
    }
    embed_dim = int(getattr(sm.model, "head_hidden_size", None) or sm.model.num_features)
    FeatureStore.create(
        slide_dir / "features.zarr",
        grid,
        sm.strides,
        sm.channels,
        embed_dim,
        sm.num_classes,
        opt.dtype,
        attrs,
        max_chunk=EXACT_CHUNK if opt.exact else None,
    )
    plan = {
        "fingerprint": fp,
        "tissue": tissue_info,
        "tissue_regions": tissue,
        "regions_total": len(grid),
        "plan_s": round(time.perf_counter() - t0, 3),
    }
    _write_json(slide_dir / "plan.json", plan)


def _finalize(
    path: Path,
    slide_dir: Path,
    reader,
    view,
    sm: SlideModel,
    opt: EmbedOptions,
    plan: dict,
    timings: list[dict],
    started: float,
    resumed: int,
) -> dict:
    """Rank 0: attributes, PNGs and ``slide.json`` (written last)."""
    import zarr
    from PIL import Image

    from atlas_vision.slide.heatmap import render_heatmap_png, render_tissue_png

    t0 = time.perf_counter()
    grid = _grid(view, opt)
    done, failed = read_done(slide_dir / "progress"), read_failed(slide_dir / "progress")
    failed = {k: v for k, v in failed.items() if k not in done}
    group = zarr.open_group(str(slide_dir / "features.zarr"), mode="r+")
    group.attrs["regions_done"] = [[grid.region(i).row, grid.region(i).col] for i in sorted(done)]
    group.attrs["regions_failed"] = [[grid.region(i).row, grid.region(i).col] for i in sorted(failed)]
    features = open_features(slide_dir / "features.zarr")
    embedding, prediction = None, None
    if done:
        rows_cols = np.array([[grid.region(i).row, grid.region(i).col] for i in sorted(done)])
        emb = np.asarray(features.region_embedding[...])[rows_cols[:, 0], rows_cols[:, 1]]  # [N, D]
        embedding = emb.mean(axis=0).tolist()
        if features.region_probs is not None:
            probs = np.asarray(features.region_probs[...])[rows_cols[:, 0], rows_cols[:, 1]].mean(axis=0)
            label = int(probs.argmax())
            prediction = {
                "probabilities": probs.tolist(),
                "label": label,
                "class_name": sm.class_names[label] if sm.class_names else None,
                "rule": "mean of the region probabilities over the processed regions",
            }
    thumb = np.asarray(Image.open(slide_dir / "state" / "thumbnail.png").convert("RGB"))
    mask = np.asarray(Image.open(slide_dir / "state" / "tissue_mask.png")) > 0
    to_thumb = _target_to_thumb(reader, view, thumb)
    mpp = f"{view.mpp:.3g} µm/px" if view.mpp else "mpp unknown"
    title = f"{slide_id_of(path)} - {sm.name}, level {view.level}, {mpp}"
    render_tissue_png(
        slide_dir / "tissue.png", thumb, mask, grid, to_thumb, plan["tissue_regions"], done, set(failed), title
    )
    heatmap = render_heatmap_png(
        slide_dir / "heatmap.png", thumb, features, to_thumb, title, opt.heatmap_stage, sm.class_names
    )
    summary = {
        "slide_id": slide_id_of(path),
        "path": str(path),
        "status": "finished",
        "fingerprint": plan["fingerprint"],
        "model": sm.describe(),
        "resolution": view.describe(),
        "tissue": plan["tissue"],
        "regions": {
            "total": plan["regions_total"],
            "tissue": len(plan["tissue_regions"]),
            "done": len(done),
            "skipped_background": plan["regions_total"] - len(plan["tissue_regions"]),
            "failed": {str(k): v for k, v in sorted(failed.items())},
            "done_before_this_run": resumed,
        },
        "embedding": embedding,
        "embedding_rule": "mean of the regions' pooled embeddings (forward_head(pre_logits=True))",
        "prediction": prediction,
        "heatmap": heatmap,
        "timings": {
            "plan_s": plan.get("plan_s"),
            "ranks": timings,
            "finalize_s": round(time.perf_counter() - t0, 3),
            "wall_s": round(time.perf_counter() - started, 3),
        },
    }
    _write_json(slide_dir / "slide.json", summary)
    return summary


def embed_slide(path: Path, out_dir: Path, opt: EmbedOptions, sm: SlideModel, ctx) -> dict:
    """Embed one slide into ``out_dir / <slide_id>`` (see the module docstring); returns its summary."""
    from atlas_vision.train.distributed import all_gather_objects, barrier

    started = time.perf_counter()
    slide_dir = out_dir / slide_id_of(path)
    with open_slide(path, opt.backend, opt.max_pixels) as reader:
        view = select_resolution(reader, opt.mpp, opt.level, opt.slide_mpp)
        fp = _fingerprint(path, reader, view, sm, opt)
        summary_path, plan_path = slide_dir / "slide.json", slide_dir / "plan.json"
        for existing in (summary_path, plan_path):
            if existing.is_file() and not opt.overwrite:
                old = json.loads(existing.read_text())["fingerprint"]
                if old != fp:
                    raise SlideError(
                        f"{slide_dir} was written with other settings ({_mismatch(old, fp)}); use "
                        "another --out or --overwrite"
                    )
        if summary_path.is_file() and not opt.overwrite:
            summary = json.loads(summary_path.read_text())
            summary["skipped"] = "finished earlier"
            return summary
        barrier(ctx)  # every rank has checked before rank 0 changes anything
        if ctx.is_main:
            if opt.overwrite and slide_dir.exists():
                shutil.rmtree(slide_dir)
            if not plan_path.is_file():
                if opt.exact:
                    from atlas_vision.slide.exact import check_exact_model

                    check_exact_model(sm)
                else:
                    check_region_geometry(opt.region_size, opt.overlap, max(sm.strides))
                slide_dir.mkdir(parents=True, exist_ok=True)
                _plan(path, slide_dir, reader, view, sm, opt, fp)
        barrier(ctx)
        plan = json.loads(plan_path.read_text())
        grid = _grid(view, opt)
        progress_dir = slide_dir / "progress"
        done = read_done(progress_dir)
        todo = [i for i in plan["tissue_regions"] if i not in done]
        mine = todo[ctx.rank :: ctx.world_size]
        store = FeatureStore.open(slide_dir / "features.zarr", grid, sm.strides, opt.dtype)
        with ProgressLog(progress_dir, ctx.rank) as log:
            if opt.exact:
                from atlas_vision.slide.exact import embed_exact

                timings = embed_exact(view, grid, mine, sm, store, log, stem_tile=opt.stem_tile).as_dict()
            else:
                timings = embed_regions(
                    view,
                    grid,
                    mine,
                    sm,
                    store,
                    log,
                    batch_size=opt.batch_size,
                    read_threads=opt.read_threads,
                    strict=opt.strict,
                ).as_dict()
        timings["rank"] = ctx.rank
        all_timings = all_gather_objects(timings, ctx)
        barrier(ctx)
        if ctx.is_main:
            _finalize(path, slide_dir, reader, view, sm, opt, plan, all_timings, started, len(done))
        barrier(ctx)
    return json.loads(summary_path.read_text())


def embed_slides(inputs: list[str | Path], out_dir: str | Path, opt: EmbedOptions, device: str = "auto") -> list[dict]:
    """Embed every slide of ``inputs`` (files, folders, list files) slide by slide; under ``torchrun`` the regions
    of each slide are sharded over the ranks. Finished slides (same settings) are skipped."""
    from atlas_vision.train.distributed import setup_distributed, teardown_distributed

    slides = expand_inputs(inputs)
    for slide in slides:
        if not slide.exists():
            raise FileNotFoundError(f"slide not found: {slide}")
    ctx = setup_distributed(device)
    try:
        sm = load_slide_model(opt.model, opt.checkpoint, opt.num_classes, opt.seed, ctx.device)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        results = []
        for slide in slides:
            summary = embed_slide(slide, out_dir, opt, sm, ctx)
            results.append(summary)
            if ctx.is_main:
                regions = summary["regions"]
                state = summary.get("skipped", "done")
                print(
                    f"{summary['slide_id']}: {state}; {regions['done']}/{regions['tissue']} tissue regions, "
                    f"{regions['skipped_background']} background skipped, {len(regions['failed'])} failed "
                    f"-> {out_dir / summary['slide_id']}",
                    file=sys.stderr,
                )
        return results
    finally:
        teardown_distributed(ctx)


def options_dict(opt: EmbedOptions) -> dict:
    return asdict(opt)
