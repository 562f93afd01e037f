"""Seeding and saving/restoring every random number generator the training loop touches.

Generators: Python ``random`` (timm RandAugment), NumPy's global generator (timm ``Mixup``), torch's CPU generator
(model init, dropout/drop-path, mixup permutation) and the current CUDA device's generator.

Policy (see :mod:`atlas_vision.train.trainer`): at the start of every epoch all generators are re-seeded from
``(seed, epoch, rank)``, so an epoch's randomness does not depend on what happened before it and a resume from an
epoch-boundary checkpoint is exact for any world size.  Mid-epoch checkpoints (Ctrl-C, ``run.ckpt_every_steps``)
additionally carry the live generator states captured by :func:`capture_rng_state`.

The captured state contains only tensors, ints, floats, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def derive_seed(seed: int, *streams: int) -> int:
    """A 32-bit seed that mixes ``seed`` with stream numbers (e.g. epoch, rank) through NumPy's SeedSequence."""
    return int(np.random.SeedSequence([seed, *streams]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed Python ``random``, NumPy's global generator and torch (CPU and all CUDA devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng_state(device: torch.device) -> dict[str, Any]:
    """The current state of every generator, in a ``weights_only``-loadable form."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "numpy": {
            "name": np_name,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore the generators from :func:`capture_rng_state` output."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state(
        (npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
