"""Whether autograd will differentiate through an op: decides the backend (:mod:`atlas_vision.ops.dispatch`) and
whether the split backend's fused kernels go through their ``autograd.Function`` (:mod:`atlas_vision.ops.split`)."""

from __future__ import annotations

import torch


def needs_grad(*tensors: torch.Tensor) -> bool:
    """Whether autograd will differentiate through an op on these tensors."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
