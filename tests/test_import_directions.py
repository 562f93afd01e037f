"""The import directions of docs/design.md ("Where things live") for the model code: ops <- layers <- models / mixers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import atlas_vision

PACKAGE = Path(atlas_vision.__file__).parent
ALLOWED = {  # folder -> the package folders it may import (besides itself)
    "ops": set(),
    "layers": {"ops", "requirements"},  # requirements.py: the timm floor check, importing nothing of the package
    "models": {"layers", "ops"},
    "mixers": {"layers", "ops"},
}


def _imported_folders(path: Path) -> set[str]:
    """First-level ``atlas_vision.<folder>`` names imported anywhere in a file (also inside functions)."""
    folders = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "atlas_vision":
                folders.add(parts[1] if len(parts) > 1 else "atlas_vision (root)")
    return folders


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_model_code_imports_only_downwards(folder):
    files = sorted((PACKAGE / folder).glob("*.py"))
    assert files
    for path in files:
        bad = _imported_folders(path) - ALLOWED[folder] - {folder}
        assert not bad, (
            f"{path.relative_to(PACKAGE)} imports {sorted(bad)}; {folder}/ may import {sorted(ALLOWED[folder])}"
        )
