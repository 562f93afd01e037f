"""ONNX export (``torch.onnx.export(dynamo=True)``, opset >= 18) and a runner that refuses unsupported sizes.

The accepted input sizes (:class:`~atlas_vision.export.sizes.SizeSpec`) are stored in the model's
``metadata_props`` under ``atlas_vision.input_sizes``. ONNX Runtime itself would run an out-of-range size of a
dynamic graph and return a wrong answer (the graph's layout is that of the traced range), so call the model through
:class:`OnnxAtlas`, which checks the size first.

Needs the ``export`` extra (``pip install atlas-vision[export]``: onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.export import ExportedProgram

from atlas_vision.export.graph import export_program
from atlas_vision.export.sizes import SizeSpec
from atlas_vision.models.atlas import Atlas

METADATA_SIZES = "atlas_vision.input_sizes"
METADATA_EXPORT = "atlas_vision.export"
MIN_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "image", "logits"


def export_onnx(model: Atlas | ExportedProgram, spec: SizeSpec, path: str | Path, *, opset: int = MIN_OPSET) -> Path:
    """Export ``model`` for the sizes of ``spec`` to ``path`` (input ``image`` [B, C, H, W], output ``logits``).

    Args:
        model: an Atlas model, or the program :func:`~atlas_vision.export.graph.export_program` made for ``spec``
            (saves tracing twice when writing both artifacts).

    The exported model includes neither resizing nor normalisation: feed it what you would feed the PyTorch model.
    """
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    program = model if isinstance(model, ExportedProgram) else export_program(model, spec)
    onnx_program = torch.onnx.export(
        program, dynamo=True, opset_version=opset, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], verbose=False
    )
    onnx_program.model.metadata_props[METADATA_SIZES] = spec.to_json()
    onnx_program.model.metadata_props[METADATA_EXPORT] = json.dumps({"attention_backend": "sdpa", "opset": opset})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx_program.save(str(path))
    return path


class OnnxAtlas:
    """An exported Atlas in ONNX Runtime (CPU by default) that checks every input size against the export's.

    Args:
        path: the ``.onnx`` file written by :func:`export_onnx`.
        providers: ONNX Runtime execution providers.

    Example:
        >>> runner = OnnxAtlas("atlas.onnx")  # doctest: +SKIP
        >>> logits = runner(images)  # np.ndarray or torch.Tensor [B, C, H, W] -> np.ndarray [B, classes]
    """

    def __init__(self, path: str | Path, providers: list[str] | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no ONNX model at {str(self.path)!r}")
        self.session = ort.InferenceSession(str(self.path), providers=providers or ["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_SIZES not in meta:
            raise ValueError(
                f"{str(self.path)!r} has no {METADATA_SIZES!r} metadata: it was not written by atlas_vision's "
                f"export_onnx, so the sizes it supports are unknown"
            )
        self.spec = SizeSpec.from_json(meta[METADATA_SIZES])

    def __call__(self, images: np.ndarray | torch.Tensor) -> np.ndarray:
        """``[B, C, H, W]`` float32 images -> ``[B, num_classes]`` logits; ``ValueError`` for an unsupported size."""
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        self.spec.check(tuple(images.shape))
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(images, dtype=np.float32)})[0]
