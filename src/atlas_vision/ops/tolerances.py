"""The one table of numerical tolerances, beside the backends it describes. Every test takes its tolerances here.

Keyed by ``(subject, dtype)`` -> ``{"fwd": (atol, rtol), "bwd": (atol, rtol)}`` (forward outputs, gradients):

* a backend of the MSA ops (``"sdpa"``, ``"split"``) against the float64 reference, per compute dtype;
* ``"reference"``: a float64 reference written independently of the code under test (dense, loops) against it --
  both in float64, so only summation order differs (mixer references, the whole-MSA-block reference);
* ``"model"``: two runs of a whole network that must agree up to float32 summation order (grad checkpointing, batch
  independence, split vs sdpa backend);
* ``"compiled"``: a whole network under ``torch.compile`` against eager (fused kernels reorder more);
* ``"scan"``: the chunked closed-form selective scan against the per-step loop, float32 with large decay steps;
* ``"external"``: our implementation against a third-party package's (FasterViT's HAT), float64.

A new backend adds its rows here (as ``"flex"`` did).
"""

from __future__ import annotations

import torch

Tolerance = tuple[float, float]  # (atol, rtol)

TOLERANCES: dict[tuple[str, torch.dtype], dict[str, Tolerance]] = {
    ("sdpa", torch.float64): {"fwd": (1e-10, 1e-10), "bwd": (1e-9, 1e-9)},
    ("sdpa", torch.float32): {"fwd": (1e-5, 1e-5), "bwd": (1e-4, 1e-4)},
    ("sdpa", torch.bfloat16): {"fwd": (2e-2, 1e-2), "bwd": (5e-2, 5e-2)},
    # split / LSE-merge backend: fused CPU flash kernels or the pure-PyTorch fallback
    ("split", torch.float64): {"fwd": (1e-10, 1e-10), "bwd": (1e-9, 1e-9)},
    ("split", torch.float32): {"fwd": (1e-5, 1e-5), "bwd": (1e-4, 1e-4)},
    ("split", torch.bfloat16): {"fwd": (2e-2, 1e-2), "bwd": (5e-2, 5e-2)},
    # FlexAttention (compiled; forward only on CPU): fp64 only in eager checks of the mask logic
    ("flex", torch.float64): {"fwd": (1e-10, 1e-10), "bwd": (1e-9, 1e-9)},
    ("flex", torch.float32): {"fwd": (1e-5, 1e-5), "bwd": (1e-4, 1e-4)},
    ("flex", torch.bfloat16): {"fwd": (2e-2, 1e-2), "bwd": (5e-2, 5e-2)},
    ("reference", torch.float64): {"fwd": (1e-10, 1e-9), "bwd": (1e-10, 1e-9)},
    ("model", torch.float32): {"fwd": (1e-5, 1e-4), "bwd": (1e-4, 1e-3)},
    ("mixer", torch.float32): {"fwd": (1e-5, 1e-5), "bwd": (1e-4, 1e-4)},
    ("compiled", torch.float32): {"fwd": (1e-4, 1e-4), "bwd": (1e-3, 1e-3)},
    ("scan", torch.float32): {"fwd": (1e-4, 1e-4), "bwd": (1e-3, 1e-3)},
    ("external", torch.float64): {"fwd": (1e-9, 1e-9), "bwd": (1e-9, 1e-9)},
}


def tol(subject: str, dtype: torch.dtype, kind: str) -> dict[str, float]:
    """``{"atol": ..., "rtol": ...}`` for ``torch.testing.assert_close``; ``kind`` is ``"fwd"`` or ``"bwd"``.

    Raises:
        KeyError: no row for ``(subject, dtype)`` or an unknown ``kind`` (add the row rather than guess).
    """
    try:
        atol, rtol = TOLERANCES[(subject, dtype)][kind]
    except KeyError:
        raise KeyError(
            f"no tolerance for ({subject!r}, {dtype}, {kind!r}); rows: {sorted(map(str, TOLERANCES))}"
        ) from None
    return {"atol": atol, "rtol": rtol}
