"""Backends of the MSA attention ops: what each one declares it supports, and the one place that chooses.

Every backend is one :class:`BackendSpec` in :data:`BACKENDS` (the NATTEN / xFormers pattern): its implementations
per pass, and the devices, dtypes, head dims and autograd support it declares. :func:`resolve_backend` turns user
input (an enum, a string or ``None``) into the spec that runs:

* a forced backend that cannot run the inputs raises a ``ValueError`` naming the backend and every reason
  (:meth:`BackendSpec.not_supported_reasons`) -- never a silent fallback to another backend;
* ``auto`` takes the first spec in :data:`BACKENDS` whose ``auto`` rule wants the inputs and that can run them.

Adding a backend is one enum member and one ``BackendSpec`` in :data:`BACKENDS` (placed where ``auto`` should
consider it), plus its rows in :mod:`atlas_vision.ops.tolerances` -- as ``flex`` was added.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from enum import Enum

import torch

from atlas_vision.ops.flex import (
    FLEX_MIN_HEAD_DIM_CUDA,
    flex_bottomup_attention,
    flex_topdown_attention,
    flex_unavailable,
)
from atlas_vision.ops.reference import reference_bottomup_attention, reference_topdown_attention
from atlas_vision.ops.sdpa import sdpa_bottomup_attention, sdpa_topdown_attention
from atlas_vision.ops.split import cpu_kernel_available, split_bottomup_attention, split_topdown_attention


class Backend(str, Enum):
    """Implementation of the windowed multi-scale attention ops (declarations in :data:`BACKENDS`).

    * ``AUTO``: the fastest backend that supports the inputs: ``SPLIT`` for top-down attention on CPU (its fused
      kernels exist there; measured in docs/benchmarks.md section 4), ``SDPA`` otherwise. Measured on CPU for one
      64x64-token top-down pass (section 11): split 53 ms, sdpa 60 ms, flex (eager, as it runs there) 3,023 ms.
      ``FLEX`` is not measured on CUDA yet (no GPU lent), so ``auto`` does not pick it anywhere.
    * ``SDPA``: windows batched through ``torch.nn.functional.scaled_dot_product_attention``; any device, forward and
      backward.
    * ``SPLIT``: one attention per key segment (own window, each ancestor window) merged by log-sum-exp, so no fine
      window gets a copy of its ancestors' K/V; fused CPU flash kernels forward and backward, a pure-PyTorch fallback
      elsewhere (:mod:`atlas_vision.ops.split`). Bottom-up is one segment per fine window through the same kernels.
    * ``FLEX``: each pass as one ``torch.nn.attention.flex_attention`` call (compiled) under a block mask built from
      the layout (:mod:`atlas_vision.ops.flex`); forward and backward on CUDA, forward only on CPU (PyTorch has no
      CPU backward). Never chosen by ``auto`` until it is measured faster on a device (docs/benchmarks.md section 11).
    * ``REFERENCE``: dense attention under a coordinate-built visibility mask; slow (memory ~ N^2), for testing.
    """

    AUTO = "auto"
    SDPA = "sdpa"
    SPLIT = "split"
    FLEX = "flex"
    REFERENCE = "reference"

    @classmethod
    def _missing_(cls, value: object) -> Backend:
        raise ValueError(f"unknown attention backend {value!r}; valid: {[b.value for b in cls]}")

    @classmethod
    def parse(cls, value: Backend | str | None) -> Backend:
        """The one parser of user input: ``None`` -> ``AUTO``, a string -> its member, or a clear ``ValueError``."""
        return cls.AUTO if value is None else cls(value)


class Pass(str, Enum):
    """The two attention passes of an MSA block."""

    TOP_DOWN = "top_down"  # spec 1.4, eq. 2: own window + the containing window of every coarser scale
    BOTTOM_UP = "bottom_up"  # spec 1.5, eq. 3: coarse tokens attend to the fine window they were pooled from


FLOAT_DTYPES = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})


def _always(q: torch.Tensor, pass_: Pass) -> bool:
    return True


def _never(q: torch.Tensor, pass_: Pass) -> bool:
    return False


def _available() -> str | None:
    return None


@dataclass(frozen=True)
class BackendSpec:
    """What one backend implements and supports.

    Attributes:
        backend: the enum member users pass.
        topdown: the top-down implementation (signature of :func:`atlas_vision.ops.topdown_attention` without the
            keyword-only ``backend``), or ``None`` if the backend has no top-down pass.
        bottomup: the bottom-up implementation, or ``None``.
        dtypes: dtypes of q/k/v it runs.
        devices: device types it runs on (``"cpu"``, ``"cuda"``, ...); ``None`` = any.
        head_dims: head dims it runs; ``None`` = any.
        min_head_dim: per device type, the smallest head dim it runs there (types not named: no minimum).
        autograd_devices: device types where it is differentiable; ``None`` = wherever it runs, empty = forward only.
        auto: whether ``Backend.AUTO`` should pick it for these inputs and pass (it is the fastest measured there).
        unavailable: a reason this torch build cannot run it at all (a missing op or module), or ``None``.
    """

    backend: Backend
    topdown: Callable[..., torch.Tensor] | None
    bottomup: Callable[..., torch.Tensor] | None
    dtypes: frozenset[torch.dtype] = FLOAT_DTYPES
    devices: frozenset[str] | None = None
    head_dims: Collection[int] | None = None
    min_head_dim: Mapping[str, int] = field(default_factory=dict)
    autograd_devices: frozenset[str] | None = None
    auto: Callable[[torch.Tensor, Pass], bool] = _never
    unavailable: Callable[[], str | None] = _available

    @property
    def passes(self) -> frozenset[Pass]:
        """The passes it implements."""
        # a list, not a generator: torch 2.8's dynamo cannot build a frozenset from a generator inside a compiled model
        return frozenset([p for p, fn in ((Pass.TOP_DOWN, self.topdown), (Pass.BOTTOM_UP, self.bottomup)) if fn])

    def implementation(self, pass_: Pass) -> Callable[..., torch.Tensor]:
        fn = self.topdown if pass_ is Pass.TOP_DOWN else self.bottomup
        if fn is None:  # resolve_backend checks first; a direct call gets the same message
            raise ValueError(f"attention backend {self.backend.value!r} has no {pass_.value} pass")
        return fn

    def not_supported_reasons(self, pass_: Pass, q: torch.Tensor, needs_grad: bool) -> list[str]:
        """Why this backend cannot run ``pass_`` on queries like ``q`` (empty list = it can).

        Args:
            pass_: the attention pass.
            q: the query map ``[B, h, w, n, d]`` (its device, dtype and head dim ``d`` decide; K/V match it).
            needs_grad: whether a backward pass will be needed.
        """
        reasons = []
        missing = self.unavailable()
        if missing:
            reasons.append(missing)
        if pass_ not in self.passes:
            reasons.append(f"no {pass_.value} pass (implements: {sorted(p.value for p in self.passes)})")
        device = q.device.type
        if self.devices is not None and device not in self.devices:
            reasons.append(f"device {device!r} not supported (supported: {sorted(self.devices)})")
        if q.dtype not in self.dtypes:
            reasons.append(f"dtype {q.dtype} not supported (supported: {sorted(str(t) for t in self.dtypes)})")
        if self.head_dims is not None and q.shape[-1] not in self.head_dims:
            reasons.append(f"head dim {q.shape[-1]} not supported (supported: {self.head_dims})")
        if q.shape[-1] < self.min_head_dim.get(device, 0):
            reasons.append(f"head dim {q.shape[-1]} too small on {device!r} (needs >= {self.min_head_dim[device]})")
        if needs_grad and self.autograd_devices is not None and device not in self.autograd_devices:
            where = sorted(self.autograd_devices) or "nowhere (forward only)"
            reasons.append(f"no backward on device {device!r} (differentiable on: {where})")
        return reasons


def _split_auto(q: torch.Tensor, pass_: Pass) -> bool:
    # top-down only: that is where split avoids the ancestor K/V copies; bottom-up keeps SDPA as before
    return pass_ is Pass.TOP_DOWN and cpu_kernel_available(q)


#: Every backend, in the order ``auto`` considers them.
BACKENDS: tuple[BackendSpec, ...] = (
    BackendSpec(Backend.SPLIT, split_topdown_attention, split_bottomup_attention, auto=_split_auto),
    BackendSpec(Backend.SDPA, sdpa_topdown_attention, sdpa_bottomup_attention, auto=_always),
    BackendSpec(
        Backend.FLEX,
        flex_topdown_attention,
        flex_bottomup_attention,
        min_head_dim={"cuda": FLEX_MIN_HEAD_DIM_CUDA},
        autograd_devices=frozenset({"cuda"}),
        unavailable=flex_unavailable,
    ),
    BackendSpec(Backend.REFERENCE, reference_topdown_attention, reference_bottomup_attention),
)
_BY_BACKEND = {spec.backend: spec for spec in BACKENDS}


def resolve_backend(backend: Backend | str | None, pass_: Pass, q: torch.Tensor, grad: bool) -> BackendSpec:
    """The backend that runs ``pass_`` on queries like ``q``.

    Args:
        backend: user input (:class:`Backend`, its string value, or ``None`` = ``auto``).
        pass_: the attention pass.
        q: the query map (device, dtype and head dim decide).
        grad: whether a backward pass will be needed (see :func:`needs_grad`).

    Raises:
        ValueError: unknown backend; a forced backend that cannot run these inputs (naming it and the reasons); or
            ``auto`` with no backend that can.
    """
    chosen = Backend.parse(backend)
    if chosen is not Backend.AUTO:
        spec = _BY_BACKEND[chosen]
        reasons = spec.not_supported_reasons(pass_, q, grad)
        if reasons:
            raise ValueError(
                f"attention backend {chosen.value!r} cannot run {pass_.value} attention on {q.device.type} "
                f"{q.dtype} inputs with head dim {q.shape[-1]}: {'; '.join(reasons)}"
            )
        return spec
    for spec in BACKENDS:
        if spec.auto(q, pass_) and not spec.not_supported_reasons(pass_, q, grad):
            return spec
    details = "; ".join(
        f"{spec.backend.value}: {', '.join(spec.not_supported_reasons(pass_, q, grad)) or 'not an auto choice'}"
        for spec in BACKENDS
    )
    raise ValueError(
        f"no attention backend can run {pass_.value} attention on {q.device.type} {q.dtype} inputs with head dim "
        f"{q.shape[-1]} ({details})"
    )
