"""Contribution maps of trained slide heads drawn over slide thumbnails (PNG, matplotlib).

:func:`draw_slide_maps` writes one figure per slide: the thumbnail, then one panel per head with its
:func:`~atlas_vision.slidelearn.contribution.contribution_map` (attention weights for ABMIL, the exact linear share
for mean pooling, gradient x input for the Atlas head) as a semi-transparent heatmap, titled with the head's
prediction.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def load_grid(slide_dir: Path, stage: int) -> tuple[torch.Tensor, dict]:
    """The heads' input ``[C + 1, h, w]`` of one ``slide embed`` folder and its ``features.zarr`` attributes."""
    from atlas_vision.slide.features import open_features
    from atlas_vision.slidelearn.features_source import read_grid
    from atlas_vision.slidelearn.grid_input import pack_grid

    features, valid = read_grid(slide_dir / "features.zarr", stage)
    attrs = open_features(slide_dir).attrs
    return pack_grid(torch.from_numpy(features), torch.from_numpy(valid)), attrs


def grid_extent(attrs: dict, stage: int, grid_hw: tuple[int, int], thumb_hw: tuple[int, int]) -> tuple[float, ...]:
    """``imshow`` extent ``(left, right, bottom, top)`` in thumbnail pixels of a stage grid: cell ``(r, c)`` covers
    level-0 px ``[c * s * d, (c + 1) * s * d)`` for stride ``s`` and downsample ``d``."""
    w0, h0 = attrs["slide_dimensions"]
    span = float(attrs["strides"][stage]) * float(attrs["downsample"])
    return (0.0, grid_hw[1] * span * thumb_hw[1] / w0, grid_hw[0] * span * thumb_hw[0] / h0, 0.0)


def draw_slide_maps(
    slide_dir: Path,
    models: Sequence[tuple[str, torch.nn.Module]],
    class_names: Sequence[str],
    stage: int,
    out: Path,
    true_label: str | None = None,
) -> Path:
    """One PNG: the thumbnail of ``slide_dir`` and each model's contribution map over it."""
    from PIL import Image

    from atlas_vision.slidelearn.contribution import contribution_map, method_of

    plt = _pyplot()
    grid, attrs = load_grid(slide_dir, stage)
    thumb = np.asarray(Image.open(slide_dir / "state" / "thumbnail.png").convert("RGB"))
    extent = grid_extent(attrs, stage, tuple(grid.shape[1:]), thumb.shape[:2])
    aspect = thumb.shape[1] / thumb.shape[0]
    fig, axes = plt.subplots(len(models) + 1, 1, figsize=(6.4, (6.4 / aspect + 0.45) * (len(models) + 1)), dpi=100)
    axes[0].imshow(thumb)
    axes[0].set_title(f"{slide_dir.name}" + (f" (true: {true_label})" if true_label else ""), fontsize=10)
    for ax, (name, model) in zip(axes[1:], models):
        cell, pred = contribution_map(model, grid.to(next(model.parameters()).dtype))
        ax.imshow(thumb)
        values = cell.numpy()
        alpha = 0.1 + 0.75 * values  # weak cells stay see-through, so the tissue under them remains visible
        ax.imshow(values, cmap="inferno", alpha=alpha, extent=extent, interpolation="nearest", vmin=0, vmax=1)
        ax.set_title(f"{name}: predicts {class_names[pred]}  [{method_of(model)}]", fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def draw_maps(out: Path, slide_ids: Sequence[str], run_dirs: Sequence[str], stage: int) -> list[Path]:
    """The demo's maps: ``OUT/maps/<slide_id>.png`` for each slide, with every trained head of ``run_dirs``."""
    import csv

    from atlas_vision.train import load_checkpoint

    loaded = [load_checkpoint(run, "cpu", prefer="last") for run in run_dirs]
    models = [(ckpt.meta["model"]["name"], ckpt.model) for ckpt in loaded]
    with (out / "labels.csv").open() as f:
        truth = {row["slide_id"]: row["label"] for row in csv.DictReader(f)}
    return [
        draw_slide_maps(
            out / "features" / sid, models, loaded[0].class_names, stage, out / "maps" / f"{sid}.png", truth.get(sid)
        )
        for sid in slide_ids
    ]
