"""Tracing an Atlas model into a graph: the exportable copy (sdpa backend) and the ``torch.export`` call.

The ``sdpa`` backend is used for every export: it is plain ``F.scaled_dot_product_attention`` on reshaped windows,
which ``torch.export`` and the ONNX exporter translate (opset 18+: ``Attention`` is decomposed into MatMul/Softmax).
The ``split`` backend calls fused CPU kernels inside a custom ``autograd.Function`` and does not export; ``reference``
would export but builds an N x N mask.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch.export import Dim, ExportedProgram

from atlas_vision.export.sizes import SizeSpec
from atlas_vision.models.atlas import Atlas
from atlas_vision.ops import Backend

EXPORT_BACKEND = Backend.SDPA
MAX_BATCH = 4096


def exportable_copy(model: Atlas) -> Atlas:
    """A copy of ``model`` in eval mode on the CPU with the ``sdpa`` backend and the same weights."""
    if not isinstance(model, Atlas):
        raise TypeError(f"export supports Atlas models, got {type(model).__name__}")
    copy = Atlas(replace(model.config, backend=EXPORT_BACKEND))
    if copy.num_classes != model.num_classes:  # reset_classifier was called on the original
        copy.reset_classifier(model.num_classes)
    copy.load_state_dict({k: v.detach().cpu() for k, v in model.state_dict().items()})
    return copy.eval()


def example_input(spec: SizeSpec, batch: int = 2) -> torch.Tensor:
    """An example batch at the smallest accepted size (batch 2: a batch of 1 would be specialised by the tracer)."""
    return torch.randn(batch, spec.in_chans, *spec.min_hw, generator=torch.Generator().manual_seed(0))


def dynamic_shapes(spec: SizeSpec) -> tuple[dict[int, object]]:
    """``dynamic_shapes`` for the image argument: batch always dynamic; ``H = mh * Dim``, ``W = mw * Dim`` unless fixed."""
    shapes: dict[int, object] = {0: Dim("batch", min=1, max=MAX_BATCH)}
    if not spec.is_fixed:
        (mh, mw), (lo_h, lo_w), (hi_h, hi_w) = spec.multiple, spec.min_hw, spec.max_hw
        if lo_h != hi_h:
            shapes[2] = mh * Dim("h_blocks", min=lo_h // mh, max=hi_h // mh)
        if lo_w != hi_w:
            shapes[3] = mw * Dim("w_blocks", min=lo_w // mw, max=hi_w // mw)
    return (shapes,)


def export_program(model: Atlas, spec: SizeSpec) -> ExportedProgram:
    """``torch.export.export`` of an exportable copy of ``model`` for the sizes of ``spec``."""
    copy = exportable_copy(model)
    with torch.no_grad():
        return torch.export.export(copy, (example_input(spec),), dynamic_shapes=dynamic_shapes(spec), strict=False)
