"""The oldest timm atlas-vision runs on, checked once when the model layers are imported; the oldest torch.

Two things set the floor (each tried on 2026-12-04 against PyPI's releases 1.0.12–1.0.31):

* every Atlas module takes timm's factory arguments (``device=``, ``dtype=``, as timm's own models do) and hands them
  to ``timm.layers.LayerNorm2d`` and ``timm.layers.Mlp``: ``LayerNorm2d`` takes them in 1.0.19 but not 1.0.15,
  ``Mlp`` in 1.0.21 but not 1.0.20, neither in 1.0.12 (the floor this project declared before);
* :func:`atlas_vision.hub.save_hub` records the preprocessing through ``save_config_for_hf(..., data_config=...)``,
  which timm has from 1.0.31 (1.0.21–1.0.30 have neither the argument nor the input-config resolution behind it).

An older timm, which pip's resolver refuses but an image with timm preinstalled may carry, would otherwise fail deep
inside model construction (``TypeError: ... unexpected keyword argument 'device'``) or at the first save. The pin in
``pyproject.toml`` says the same (``tests/test_requirements.py`` keeps the two equal).

The torch floor, :data:`MIN_TORCH`, is the oldest release on which the whole default test suite passed, each run on
the 2-core CPU machine with timm 1.0.31 and every extra installed (PyPI's CUDA wheels running on CPU). On 2026-12-08
(commit ``ca5b13c``) 2.8.0, 2.9.1, 2.10.0, 2.11.0 and 2.14.1 passed, 2.8.0 once a compiled model's stem stopped being
checkpointed there (:mod:`atlas_vision.layers.checkpointing`: its compiled checkpoint updated BatchNorm statistics
twice). On 2026-12-04: 2.14.1 and 2.11.0 passed; 2.8.0 passed (1151 passed, 10 skipped) once
:attr:`atlas_vision.ops.dispatch.BackendSpec.passes` built its frozenset from a list (its dynamo could not build one
from a generator inside a compiled model); 2.6.0 fails 6 tests and 3 fixtures (``torch.export`` of the model,
``torch.compile(fullgraph=True)``, four FlexAttention tests); 2.4.1 fails 27 and 3 (no FlexAttention at all, the same
compile and export failures, and the two-rank ``torchrun`` test hangs). pip enforces it, so it is not checked at
import; an older torch still runs the eager model.
"""

from __future__ import annotations

import re

MIN_TIMM = (1, 0, 31)
MIN_TORCH = (2, 8)


def release(version: str) -> tuple[int, ...]:
    """``"1.0.31.dev0"`` -> ``(1, 0, 31)``: the leading dotted integers of a version string."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    if match is None:
        raise ValueError(f"cannot read a release number from version {version!r}")
    return tuple(int(part) for part in match.group().split("."))


def check_timm_version(version: str) -> None:
    """Raise ``ImportError`` naming ``version`` and the minimum when this timm is too old for atlas-vision."""
    if release(version) < MIN_TIMM:
        minimum = ".".join(map(str, MIN_TIMM))
        raise ImportError(
            f"atlas-vision needs timm >= {minimum} (layers built with device=/dtype=, hub configs with data_config=); "
            f"found timm {version}. Upgrade it: pip install -U 'timm>={minimum}'"
        )
