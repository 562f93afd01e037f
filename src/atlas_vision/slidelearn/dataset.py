"""Slide data sets for ``atlas-vision train --data.task slide_features``: feature grids + a labels CSV.

``ROOT/<slide_id>/features.zarr`` (the run folders written by ``atlas-vision slide embed``) and a CSV
``slide_id,label[,split]`` (see :mod:`~atlas_vision.slidelearn.labels_csv`). Grids are read lazily, one slide per
``__getitem__``; at construction only their metadata is opened, so a missing grid, a grid from another feature
model or a grid larger than the padded size fails before training, naming the CSV line.

Batching slides of different sizes: every slide is padded (top-left, zeros, mask 0) to ``data.img_size`` =
``(H, W)`` in grid cells; the mask travels as the last channel (:mod:`~atlas_vision.slidelearn.grid_input`), and
every head ignores padding exactly. Set ``img_size`` to the largest grid; ``optim.batch_size 1`` with
``optim.global_batch N`` (gradient accumulation) is the alternative (``docs/slide-learning.md`` measures both:
``benchmarks/slide_batching.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from atlas_vision.slidelearn.features_source import features_path, grid_shape, read_grid
from atlas_vision.slidelearn.grid_input import pack_grid
from atlas_vision.slidelearn.labels_csv import LabelRow, SlideLabels, load_labels


@dataclass(frozen=True)
class SlideEntry:
    """One slide of a split: where its grid is and what its label is."""

    slide_id: str
    path: Path
    label: int
    line: int
    """CSV line, for error messages."""
    grid_hw: tuple[int, int]


class SlideFeatureDataset(Dataset):
    """Items ``(grid float32 [C + 1, H, W], label int)``; ``H, W`` = ``pad_size``.

    Args:
        entries: the slides of this split.
        stage: which stage of ``features.zarr`` to read.
        pad_size: padded ``(H, W)``; every grid must fit.
        feature_dim: ``C`` (checked against every grid when read).
    """

    def __init__(self, entries: list[SlideEntry], stage: int, pad_size: tuple[int, int], feature_dim: int):
        self.entries = entries
        self.stage = stage
        self.pad_size = pad_size
        self.feature_dim = feature_dim

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        entry = self.entries[index]
        features, valid = read_grid(entry.path, self.stage)
        if features.shape[0] != self.feature_dim:
            raise ValueError(
                f"slide {entry.slide_id!r} (CSV line {entry.line}): {entry.path} stage{self.stage} has "
                f"{features.shape[0]} channels, expected {self.feature_dim}"
            )
        grid = pack_grid(torch.from_numpy(features), torch.from_numpy(valid), self.pad_size)
        return grid, entry.label


def _entries(
    rows: list[LabelRow],
    labels: SlideLabels,
    root: Path,
    stage: int,
    pad_size: tuple[int, int],
    reference: tuple[int, LabelRow] | None = None,
) -> tuple[list[SlideEntry], tuple[int, LabelRow]]:
    """Check every row's grid; returns the entries and ``(feature channels, first row)``, which ``reference``
    (from another split) fixes in advance."""
    index = {name: i for i, name in enumerate(labels.class_names)}
    entries = []
    feature_dim, first = reference if reference is not None else (-1, rows[0])
    for row in rows:
        where = f"slide {row.slide_id!r} ({labels.path}, line {row.line})"
        path = features_path(root, row.slide_id)
        try:
            channels, h, w = grid_shape(path, stage)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{where}: {path} does not exist; run `atlas-vision slide embed` for it with --out {root}, or "
                "remove the row"
            ) from None
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        if feature_dim < 0:
            feature_dim, first = channels, row
        elif channels != feature_dim:
            raise ValueError(
                f"{where}: stage{stage} has {channels} feature channels but slide {first.slide_id!r} (line "
                f"{first.line}) has {feature_dim}; all slides must come from the same feature model"
            )
        if h > pad_size[0] or w > pad_size[1]:
            raise ValueError(
                f"{where}: stage{stage} grid {h}x{w} does not fit data.img_size {pad_size[0]}x{pad_size[1]} (the "
                f"padded grid size, in cells); set --data.img_size to at least {h} {w}"
            )
        entries.append(SlideEntry(row.slide_id, path, index[row.label], row.line, (h, w)))
    return entries, (feature_dim, first)


@dataclass
class SlideSplits:
    """Train and val sets of one slide data set, plus what the model needs to know."""

    train: SlideFeatureDataset
    val: SlideFeatureDataset
    class_names: list[str]
    feature_dim: int

    @property
    def in_chans(self) -> int:
        return self.feature_dim + 1


def build_slide_splits(
    root: str | Path,
    labels_csv: str | Path | None,
    stage: int,
    pad_size: tuple[int, int],
    val_fraction: float,
    seed: int,
) -> SlideSplits:
    """Read the CSV (``ROOT/labels.csv`` when ``labels_csv`` is ``None``), check every slide, build both splits."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} does not exist (expected ROOT/<slide_id>/features.zarr)")
    labels = load_labels(Path(labels_csv) if labels_csv else root / "labels.csv", val_fraction, seed)
    train, reference = _entries(labels.train, labels, root, stage, pad_size)
    val, _ = _entries(labels.val, labels, root, stage, pad_size, reference)
    dim = reference[0]
    return SlideSplits(
        SlideFeatureDataset(train, stage, pad_size, dim),
        SlideFeatureDataset(val, stage, pad_size, dim),
        labels.class_names,
        dim,
    )
