"""Slide-level learning on feature grids: slide heads, slide data sets, slide metrics, maps and the slide demo.

Importing this package registers the heads with timm (``slide_meanpool``, ``slide_abmil``, ``slide_atlas``);
``import atlas_vision`` does so. See ``docs/slide-learning.md``.

Public API::

    MeanPoolHead, ABMILHead, SlideAtlas        # the heads; input [B, C + 1, H, W] = features + mask channel
    pack_grid(features, valid, size)           # one slide -> the heads' input format
    build_slide_splits(root, labels_csv, stage, pad_size, val_fraction, seed)
    slide_metrics(probs, labels, class_names)  # accuracy, balanced accuracy, ROC-AUC, per class
"""

from atlas_vision.slidelearn.abmil import ABMILHead
from atlas_vision.slidelearn.dataset import SlideFeatureDataset, build_slide_splits
from atlas_vision.slidelearn.feature_atlas import SlideAtlas
from atlas_vision.slidelearn.grid_input import pack_grid
from atlas_vision.slidelearn.heads import HEADS
from atlas_vision.slidelearn.mean_pool import MeanPoolHead
from atlas_vision.slidelearn.metrics import slide_metrics

__all__ = [
    "HEADS",
    "ABMILHead",
    "MeanPoolHead",
    "SlideAtlas",
    "SlideFeatureDataset",
    "build_slide_splits",
    "pack_grid",
    "slide_metrics",
]
