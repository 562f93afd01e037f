"""The PNGs of a slide run: ``tissue.png`` (mask and regions over the thumbnail) and ``heatmap.png`` (class
probabilities of a classifier, else the first three PCA components of a stage's features as RGB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PCA_SAMPLE = 50_000  # cells used to fit the PCA
BLEND = 0.75  # heatmap opacity over tissue


def _figure(thumb: np.ndarray, panels: int):
    """A figure of ``panels`` image axes, two per row, sized to the thumbnail's aspect ratio."""
    from matplotlib.figure import Figure

    h, w = thumb.shape[:2]
    cols = min(2, panels)
    rows = -(-panels // cols)
    panel_w = 6.5
    fig = Figure(figsize=(panel_w * cols + 0.8, (panel_w * h / w + 0.5) * rows + 0.4), dpi=120, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[panels:]:
        ax.set_axis_off()
    return fig, axes[:panels]


def _save(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    tmp.replace(path)


def render_tissue_png(
    path: Path,
    thumb: np.ndarray,
    mask: np.ndarray,
    grid,
    target_to_thumb: tuple[float, float],
    tissue_regions: list[int],
    done: set[int],
    failed: set[int],
    title: str,
) -> None:
    """Left: the thumbnail. Right: tissue mask (green) and processed regions (blue: done, red: failed)."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    fig, (left, right) = _figure(thumb, 2)
    left.imshow(thumb)
    left.set_title("thumbnail")
    overlay = thumb.astype(np.float32) / 255
    green = np.array([0.1, 0.75, 0.2])
    overlay[mask] = overlay[mask] * 0.5 + green * 0.5
    right.imshow(overlay)
    sx, sy = target_to_thumb
    boxes = {"done": [], "failed": [], "pending": []}
    for index in tissue_regions:
        x0, y0, x1, y1 = grid.region(index).owned
        kind = "failed" if index in failed else "done" if index in done else "pending"
        boxes[kind].append(Rectangle((x0 * sx - 0.5, y0 * sy - 0.5), (x1 - x0) * sx, (y1 - y0) * sy))
    for kind, colour in (("done", "#1f4fd1"), ("pending", "#999999"), ("failed", "#e0201b")):
        if boxes[kind]:
            right.add_collection(PatchCollection(boxes[kind], facecolor="none", edgecolor=colour, linewidth=0.8))
    skipped = len(grid) - len(tissue_regions)
    right.set_title(
        f"tissue (green); regions: {len(done)} done (blue), {len(failed)} failed (red), {skipped} background skipped",
        fontsize=10,
    )
    for ax in (left, right):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=12)
    _save(fig, path)


def _grid_to_thumb(image: np.ndarray, stride: int, target_to_thumb: tuple[float, float], thumb_shape) -> np.ndarray:
    """Nearest-neighbour resize of a stage-grid image ``[H_s, W_s, K]`` onto the thumbnail's pixels."""
    th, tw = thumb_shape[:2]
    sx, sy = target_to_thumb
    cols = np.minimum((np.arange(tw) + 0.5) / sx // stride, image.shape[1] - 1).astype(int)
    rows = np.minimum((np.arange(th) + 0.5) / sy // stride, image.shape[0] - 1).astype(int)
    return image[rows[:, None], cols[None, :]]


def pca_rgb(stage_array, valid: np.ndarray, seed: int = 0) -> np.ndarray:
    """``[H, W, 3]`` in 0..1: the first three principal components of the valid cells' features, each mapped
    from its 1st..99th percentile to 0..1 (sign fixed so the largest loading is positive); invalid cells 0."""
    import torch

    h, w = valid.shape
    rows, cols = np.nonzero(valid)
    out = np.zeros((h, w, 3), dtype=np.float32)
    if len(rows) < 2:
        return out
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(rows), size=min(PCA_SAMPLE, len(rows)), replace=False))
    row_block = stage_array.chunks[1]
    samples, projected = [], np.zeros((len(rows), 3), dtype=np.float32)
    blocks = [(r0, min(r0 + row_block, h)) for r0 in range(0, h, row_block)]
    for r0, r1 in blocks:  # pass 1: the sampled cells
        sel = pick[(rows[pick] >= r0) & (rows[pick] < r1)]
        if len(sel):
            block = np.asarray(stage_array[:, r0:r1, :], dtype=np.float32)  # [C, rows, W]
            samples.append(block[:, rows[sel] - r0, cols[sel]].T)
    x = torch.from_numpy(np.concatenate(samples))  # [N, C]
    mean = x.mean(dim=0)
    cov = (x - mean).T @ (x - mean) / max(len(x) - 1, 1)
    _, vectors = torch.linalg.eigh(cov.double())
    basis = vectors[:, -3:].flip(-1).float()  # [C, 3], largest component first
    basis *= torch.sign(basis[basis.abs().argmax(dim=0), torch.arange(basis.shape[1])])
    for r0, r1 in blocks:  # pass 2: project every valid cell
        sel = np.nonzero((rows >= r0) & (rows < r1))[0]
        if len(sel):
            block = np.asarray(stage_array[:, r0:r1, :], dtype=np.float32)
            projected[sel] = ((torch.from_numpy(block[:, rows[sel] - r0, cols[sel]].T) - mean) @ basis).numpy()
    lo, hi = np.percentile(projected, 1, axis=0), np.percentile(projected, 99, axis=0)
    out[rows, cols] = np.clip((projected - lo) / np.maximum(hi - lo, 1e-12), 0, 1)
    return out


def render_heatmap_png(
    path: Path,
    thumb: np.ndarray,
    features,
    target_to_thumb: tuple[float, float],
    title: str,
    stage: int | None = None,
    class_names: list[str] | None = None,
    kind: str = "auto",
) -> str:
    """Write ``heatmap.png``; returns what it shows (``"probabilities"`` or ``"pca stage i"``).

    Args:
        kind: ``auto`` (probabilities for a classifier run, else PCA), ``pca`` or ``probabilities``.
    """
    if kind not in ("auto", "pca", "probabilities"):
        raise ValueError(f"heatmap kind must be auto, pca or probabilities, got {kind!r}")
    if kind == "probabilities" and features.region_probs is None:
        raise ValueError("this run has no class probabilities (no classifier); use the PCA heatmap")
    if kind != "pca" and features.region_probs is not None:
        return _render_probabilities(path, thumb, features, target_to_thumb, title, class_names)
    stage = len(features.stages) - 1 if stage is None else stage
    if not -len(features.stages) <= stage < len(features.stages):
        raise ValueError(f"stage {stage} out of range 0..{len(features.stages) - 1}")
    stage %= len(features.stages)
    valid = features.tissue_mask(stage)
    rgb = pca_rgb(features.stages[stage], valid)
    stride = features.strides[stage]
    rgb_t = _grid_to_thumb(rgb, stride, target_to_thumb, thumb.shape)
    valid_t = _grid_to_thumb(valid[..., None], stride, target_to_thumb, thumb.shape)[..., 0]
    base = thumb.astype(np.float32) / 255
    overlay = base.copy()
    overlay[valid_t] = base[valid_t] * (1 - BLEND) + rgb_t[valid_t] * BLEND
    fig, (left, right) = _figure(thumb, 2)
    left.imshow(thumb)
    left.set_title("thumbnail", fontsize=11)
    right.imshow(overlay)
    right.set_title(
        f"features, stage {stage} (stride {stride} px): PCA components 1-3 as R, G, B "
        f"(similar colour = similar features)",
        fontsize=10,
    )
    for ax in (left, right):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=12)
    _save(fig, path)
    return f"pca stage {stage}"


def _render_probabilities(path, thumb, features, target_to_thumb, title, class_names) -> str:
    from matplotlib import colormaps

    probs = np.asarray(features.region_probs[...])  # [rows, cols, K]
    done = np.zeros(probs.shape[:2], dtype=bool)
    for row, col in features.attrs.get("regions_done", []):
        done[row, col] = True
    k = probs.shape[2]
    mean = probs[done].mean(axis=0) if done.any() else np.zeros(k)
    shown = list(np.argsort(-mean)[: min(3, k)])
    names = class_names or [f"class {i}" for i in range(k)]
    step = int(features.attrs["region_size"]) - int(features.attrs["overlap"])
    fig, axes = _figure(thumb, 1 + len(shown))
    axes[0].imshow(thumb)
    axes[0].set_title("thumbnail")
    cmap = colormaps["magma"]
    base = thumb.astype(np.float32) / 255
    done_t = _grid_to_thumb(done[..., None], step, target_to_thumb, thumb.shape)[..., 0]
    image = None
    for ax, cls in zip(axes[1:], shown):
        p_t = _grid_to_thumb(probs[..., cls : cls + 1], step, target_to_thumb, thumb.shape)[..., 0]
        overlay = base.copy()
        overlay[done_t] = base[done_t] * (1 - BLEND) + cmap(p_t[done_t])[:, :3] * BLEND
        image = ax.imshow(overlay)
        ax.set_title(f"P({names[cls]}) per region (slide mean {mean[cls]:.2f})", fontsize=11)
    if image is not None:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=list(axes), shrink=0.6, label="probability")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=12)
    _save(fig, path)
    return "probabilities"
