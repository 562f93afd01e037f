"""``torch.export`` artifacts (``.pt2``): saved with their accepted sizes, loaded into a size-checking module."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from atlas_vision.export.graph import export_program
from atlas_vision.export.sizes import SizeSpec
from atlas_vision.models.atlas import Atlas

SIZES_FILE = "atlas_vision_input_sizes.json"


def save_exported(model: Atlas | torch.export.ExportedProgram, spec: SizeSpec, path: str | Path) -> Path:
    """``torch.export`` ``model`` for the sizes of ``spec`` (or take the program made for ``spec``) and save it, with
    the sizes, to ``path`` (``.pt2``)."""
    program = model if isinstance(model, torch.export.ExportedProgram) else export_program(model, spec)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path), extra_files={SIZES_FILE: spec.to_json()})
    return path


class ExportedAtlas(nn.Module):
    """A loaded ``torch.export`` program that checks the input size before running (``ValueError`` otherwise)."""

    def __init__(self, program: torch.export.ExportedProgram, spec: SizeSpec):
        super().__init__()
        self.spec = spec
        self.graph = program.module()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.spec.check(tuple(images.shape))
        return self.graph(images)


def load_exported(path: str | Path) -> ExportedAtlas:
    """Load a ``.pt2`` written by :func:`save_exported`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no exported program at {str(path)!r}")
    extra = {SIZES_FILE: ""}
    program = torch.export.load(str(path), extra_files=extra)
    if not extra[SIZES_FILE]:
        raise ValueError(f"{str(path)!r} has no {SIZES_FILE}: it was not written by atlas_vision's save_exported")
    return ExportedAtlas(program, SizeSpec.from_json(extra[SIZES_FILE]))
