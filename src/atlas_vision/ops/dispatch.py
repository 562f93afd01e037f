"""Backends of the MSA attention ops and the one place that chooses between them."""

from __future__ import annotations

from enum import Enum


class Backend(str, Enum):
    """Implementation of the windowed multi-scale attention ops.

    * ``AUTO``: the fastest backend that supports the inputs (currently always ``SDPA``).
    * ``SDPA``: windows batched through ``torch.nn.functional.scaled_dot_product_attention``; CPU and GPU, forward and
      backward, any dtype SDPA supports.
    * ``REFERENCE``: dense attention under a coordinate-built visibility mask; slow (memory ~ N^2), for testing.
    """

    AUTO = "auto"
    SDPA = "sdpa"
    REFERENCE = "reference"


def resolve_backend(backend: Backend | str | None) -> Backend:
    """Turn user input into a concrete backend (strings are accepted here, once, and nowhere else)."""
    if backend is None:
        return Backend.SDPA
    try:
        backend = Backend(backend)
    except ValueError:
        raise ValueError(f"unknown attention backend {backend!r}; valid: {[b.value for b in Backend]}") from None
    return Backend.SDPA if backend is Backend.AUTO else backend
