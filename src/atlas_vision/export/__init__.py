"""Deployable Atlas models: ONNX (``torch.onnx.export(dynamo=True)``) and ``torch.export`` programs.

One graph serves one scale layout: fixed sizes, or a dynamic ``H x W`` range (multiples of ``patch_size * window``)
that keeps the layout -- see :mod:`atlas_vision.export.sizes`. The artifacts store their accepted sizes, and the
runners (:class:`OnnxAtlas`, :class:`ExportedAtlas`) refuse any other size with a ``ValueError``.
"""

from atlas_vision.export.graph import EXPORT_BACKEND, export_program, exportable_copy
from atlas_vision.export.onnx_export import OnnxAtlas, export_onnx
from atlas_vision.export.program import ExportedAtlas, load_exported, save_exported
from atlas_vision.export.sizes import SizeSpec, dynamic_size_range, fixed_size

__all__ = [
    "EXPORT_BACKEND",
    "ExportedAtlas",
    "OnnxAtlas",
    "SizeSpec",
    "dynamic_size_range",
    "export_onnx",
    "export_program",
    "exportable_copy",
    "fixed_size",
    "load_exported",
    "save_exported",
]
