"""Backends of the MSA attention ops and the one place that chooses between them."""

from __future__ import annotations

from enum import Enum


class Backend(str, Enum):
    """Implementation of the windowed multi-scale attention ops.

    * ``AUTO``: the fastest backend that supports the inputs: ``SPLIT`` on CPU (its fused kernels exist there;
      measured in docs/benchmarks.md section 4), ``SDPA`` elsewhere.
    * ``SDPA``: windows batched through ``torch.nn.functional.scaled_dot_product_attention``; CPU and GPU, forward and
      backward, any dtype SDPA supports.
    * ``SPLIT``: top-down attention as one attention per key segment (own window, each ancestor window) merged by
      log-sum-exp, so no fine window gets a copy of its ancestors' K/V; fused CPU flash kernels forward and backward,
      a pure-PyTorch fallback elsewhere (:mod:`atlas_vision.ops.split`).
    * ``REFERENCE``: dense attention under a coordinate-built visibility mask; slow (memory ~ N^2), for testing.
    """

    AUTO = "auto"
    SDPA = "sdpa"
    SPLIT = "split"
    REFERENCE = "reference"


def resolve_backend(backend: Backend | str | None, cpu_kernels: bool = False) -> Backend:
    """Turn user input into a concrete backend (strings are accepted here, once, and nowhere else).

    Args:
        cpu_kernels: whether the inputs can use the fused CPU kernels of ``SPLIT`` (decides ``AUTO``/``None``).
    """
    if backend is None:
        backend = Backend.AUTO
    try:
        backend = Backend(backend)
    except ValueError:
        raise ValueError(f"unknown attention backend {backend!r}; valid: {[b.value for b in Backend]}") from None
    if backend is Backend.AUTO:
        return Backend.SPLIT if cpu_kernels else Backend.SDPA
    return backend
