"""Training with an auxiliary target: a linear head on the pooled features that exists only during training.

A task may give each training image a second target besides its label (``longrange``: how many of the two ringed
objects are red; :class:`~atlas_vision.data.longrange.LongRangeAuxDataset`).  The trainer then calls
:class:`WithAuxiliaryHead` instead of the model: one forward pass gives the model's logits and the auxiliary head's
logits from the same pooled features, and the loss is ``CE(logits, label) + optim.aux_weight * CE(aux, target)``.

The model itself is unchanged (its checkpoints, exports and ``model(x)`` know nothing of the head); the head's
weights are kept in the training state (``state.pt``) so a resumed run continues exactly.
"""

from __future__ import annotations

import torch
from torch import nn


class WithAuxiliaryHead(nn.Module):
    """``model`` plus ``aux_head`` on its pooled features: ``[B, C, H, W]`` -> ``(logits [B, K], aux [B, A])``.

    ``logits`` are ``model.get_classifier()(model.forward_head(model.forward_features(x), pre_logits=True))``:
    equal to ``model(x)`` for Atlas and for timm models without head dropout (checked for Atlas by
    ``tests/test_aux_target.py``).  Built in the trainer; it is what DDP / ``torch.compile`` wrap and what the
    optimizer's parameter groups are made from (model first, then the head).
    """

    def __init__(self, model: nn.Module, aux_head: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.aux_head = aux_head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.model.forward_head(self.model.forward_features(x), pre_logits=True)  # [B, C]
        return self.model.get_classifier()(pooled), self.aux_head(pooled)

    @property
    def has_unused_parameters(self) -> bool:
        """The model's own answer (DDP's ``find_unused_parameters``; see ``factory.wrap_model``)."""
        return bool(getattr(self.model, "has_unused_parameters", False))

    def no_weight_decay(self) -> set[str]:
        """The model's own exemptions from weight decay, under this module's parameter names."""
        exempt = self.model.no_weight_decay() if hasattr(self.model, "no_weight_decay") else set()
        return {f"model.{name}" for name in exempt}


def create_aux_head(model: nn.Module, aux_classes: int, device: torch.device) -> nn.Linear:
    """A linear head ``[B, P] -> [B, aux_classes]`` on the model's pre-logits features (``P`` = its
    ``head_hidden_size``, timm's name for that width, else ``num_features``), with ``nn.Linear``'s default init."""
    if aux_classes < 2:
        raise ValueError(f"an auxiliary target needs at least 2 classes, got {aux_classes}")
    width = getattr(model, "head_hidden_size", None) or model.num_features
    return nn.Linear(width, aux_classes, device=device)
