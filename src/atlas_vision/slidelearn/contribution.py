"""Per-cell contribution maps of a trained slide head (what the heatmaps of ``docs/slide-learning.md`` show).

* ``ABMILHead``: the attention weights ``a_i`` (a distribution over the tissue cells);
* ``MeanPoolHead``: the exact decomposition of the predicted logit into cells, ``w_c . f_i / n`` (``n`` tissue
  cells), in absolute value;
* any other head, e.g. ``SlideAtlas``: gradient x input -- ``|sum_c x_ic d logit / d x_ic|`` over the feature
  channels ``c`` of cell ``i``, for the logit of the predicted class (a first-order estimate of how much the cell's
  features move that logit; Simonyan et al. 2014, Shrikumar et al. 2016). Atlas exposes no attention weights
  (its fused attention kernels never materialise them), hence a gradient map.

Every map is ``[H, W]``, zero off tissue, and normalised to a maximum of 1.
"""

from __future__ import annotations

import torch
from torch import nn

from atlas_vision.slidelearn.abmil import ABMILHead
from atlas_vision.slidelearn.grid_input import split_grid
from atlas_vision.slidelearn.mean_pool import MeanPoolHead

METHODS: dict[type, str] = {ABMILHead: "attention weights", MeanPoolHead: "exact linear share of the logit"}


def method_of(model: nn.Module) -> str:
    """How :func:`contribution_map` explains ``model``."""
    return METHODS.get(type(model), "gradient x input")


def contribution_map(model: nn.Module, grid: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Map ``[H, W]`` of one slide ``grid [C + 1, H, W]`` and the predicted class.

    The model is put in eval mode and restored afterwards.
    """
    was_training = model.training
    model.eval()
    try:
        x = grid.unsqueeze(0).detach()  # [1, C + 1, H, W]
        features, valid = split_grid(x, x.shape[1])
        if isinstance(model, ABMILHead):
            with torch.no_grad():
                _, weights = model.attention_weights(x)
                pred = int(model(x).argmax(1))
            cell = weights[0]
        elif isinstance(model, MeanPoolHead):
            with torch.no_grad():
                pred = int(model(x).argmax(1))
                w = model.head.weight[pred]  # [C]
                n = valid.sum().clamp_min(1)
                cell = (torch.einsum("c,chw->hw", w, features[0]) / n).abs()
        else:
            x = x.clone().requires_grad_(True)
            with torch.enable_grad():
                logits = model(x)
                pred = int(logits.argmax(1))
                (grad,) = torch.autograd.grad(logits[0, pred], x)
            cell = (grad[0, :-1] * x[0, :-1]).sum(0).abs().detach()
        cell = cell * valid[0]
        peak = cell.max()
        return (cell / peak if peak > 0 else cell), pred
    finally:
        model.train(was_training)
