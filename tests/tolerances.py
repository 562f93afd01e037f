"""The one table of numerical tolerances: (backend, dtype) -> forward and backward (atol, rtol)."""

from __future__ import annotations

import torch

TOLERANCES: dict[tuple[str, torch.dtype], dict[str, tuple[float, float]]] = {
    ("sdpa", torch.float64): {"fwd": (1e-10, 1e-10), "bwd": (1e-9, 1e-9)},
    ("sdpa", torch.float32): {"fwd": (1e-5, 1e-5), "bwd": (1e-4, 1e-4)},
    ("sdpa", torch.bfloat16): {"fwd": (2e-2, 1e-2), "bwd": (5e-2, 5e-2)},
    # split / LSE-merge backend: fused CPU flash kernels or the pure-PyTorch fallback
    ("split", torch.float64): {"fwd": (1e-10, 1e-10), "bwd": (1e-9, 1e-9)},
    ("split", torch.float32): {"fwd": (1e-5, 1e-5), "bwd": (1e-4, 1e-4)},
    ("split", torch.bfloat16): {"fwd": (2e-2, 1e-2), "bwd": (5e-2, 5e-2)},
    # whole models: grad checkpointing / batch independence / compile vs eager, fp32
    ("model", torch.float32): {"fwd": (1e-5, 1e-4), "bwd": (1e-4, 1e-3)},
}


def tol(backend: str, dtype: torch.dtype, kind: str) -> dict[str, float]:
    atol, rtol = TOLERANCES[(backend, dtype)][kind]
    return {"atol": atol, "rtol": rtol}
