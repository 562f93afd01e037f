"""Starting a run from earlier weights (``--model.init_from``): fine-tuning, or a second training stage.

``model.init_from`` names a run directory, a checkpoint directory (``RUN/checkpoints/last``) or a weight file
(``.safetensors``, or a ``torch.save`` file read with ``weights_only=True``). Every tensor is copied into the new
model by name; the **classifier** (timm's ``pretrained_cfg["classifier"]``, ``head`` for Atlas) is left at its fresh
initialisation when its shape differs - another number of classes, as between the two stages of the 3-D recipe
(``docs/tasks.md``, section 5). Any other missing, unexpected or mismatching tensor is an error naming it: the
weights are of another architecture. Resuming a run (``--resume``) restores its own weights instead; ``init_from`` is then unused.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from atlas_vision.models.weights_file import read_state_dict
from atlas_vision.train.checkpoint import WEIGHTS_FILE, CheckpointError, find_checkpoint

log = logging.getLogger("atlas_vision.train")


def read_init_weights(source: str | Path) -> dict[str, torch.Tensor]:
    """The state dict that ``source`` (a run or checkpoint directory, or a weight file) names."""
    path = Path(source)
    if path.is_dir():
        path = find_checkpoint(path, prefer="last") / WEIGHTS_FILE
    elif not path.exists():
        raise FileNotFoundError(
            f"config key 'model.init_from': nothing at {str(source)!r}; expected a run directory, a checkpoint "
            f"directory or a weight file (.safetensors / .pt)"
        )
    return read_state_dict(path)


def classifier_prefix(model: nn.Module) -> str:
    """``"head."`` for Atlas: the key prefix of the classifier weights (timm's ``pretrained_cfg``)."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    return f"{cfg.get('classifier', 'head')}."


def init_from_weights(model: nn.Module, source: str | Path) -> list[str]:
    """Copy the weights of ``source`` into ``model``; return the classifier keys left freshly initialised.

    Raises:
        CheckpointError: a non-classifier tensor is missing, unexpected or of another shape (naming it).
    """
    saved = read_init_weights(source)
    current = model.state_dict()
    head = classifier_prefix(model)
    fresh = [k for k in current if k.startswith(head) and (k not in saved or saved[k].shape != current[k].shape)]
    for key, tensor in current.items():
        if key in fresh:
            continue
        if key not in saved:
            raise CheckpointError(
                f"config key 'model.init_from': {str(source)!r} has no weight {key!r} of the model; it holds "
                f"another architecture (use the model.name and model.kwargs it was trained with)"
            )
        if saved[key].shape != tensor.shape:
            raise CheckpointError(
                f"config key 'model.init_from': weight {key!r} has shape {tuple(saved[key].shape)} in "
                f"{str(source)!r} but {tuple(tensor.shape)} in the model (use the model.kwargs it was trained with)"
            )
    unexpected = [k for k in saved if k not in current]
    if unexpected:
        raise CheckpointError(
            f"config key 'model.init_from': {str(source)!r} holds {len(unexpected)} weight(s) the model lacks, "
            f"first {unexpected[0]!r}; it is of another architecture"
        )
    model.load_state_dict({k: v for k, v in saved.items() if k not in fresh}, strict=False)
    if fresh:
        log.info("model.init_from %s: loaded all weights except the classifier %s (new shape)", source, fresh)
    else:
        log.info("model.init_from %s: loaded all weights", source)
    return fresh
