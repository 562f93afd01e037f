"""The slide demo end to end at a tiny size (slides -> slide embed -> three heads trained and evaluated -> maps)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from atlas_vision.slidelearn.demo import DemoConfig, HeadRecipe, run_demo


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tiny_demo(tmp_path: Path) -> None:
    small_atlas = {"embed_dim": 16, "num_heads": 2, "depths": [1, 1], "pos_embed_hidden": 8}
    cfg = replace(
        DemoConfig(),
        slides=8,
        batch_size=2,
        map_slides=1,
        heads=(
            HeadRecipe("slide_meanpool", 3e-3, 1),
            HeadRecipe("slide_abmil", 1e-3, 1, {"hidden_dim": 8, "attn_dim": 4}),
            HeadRecipe("slide_atlas", 1e-3, 1, small_atlas),
        ),
    )
    result = run_demo(cfg, tmp_path)
    assert [row["head"] for row in result["table"]] == ["slide_meanpool", "slide_abmil", "slide_atlas"]
    assert result["grid"] == {"channels": 64, "height": 8, "width": 24}  # atlas_tiny stage 1: 3 regions of 8x8
    for row in result["table"]:
        assert row["val_slides"] == 2 and 0.0 <= row["accuracy"] <= 1.0
        eval_json = json.loads((Path(row["run_dir"]) / "eval" / "eval.json").read_text())
        assert eval_json["slide_metrics"]["count"] == 2
    assert (tmp_path / "features" / "slide_0000" / "features.zarr").is_dir()
    assert "| `slide_atlas` |" in (tmp_path / "results.md").read_text()
    assert all(Path(p).is_file() for p in result["maps"]) and len(result["maps"]) == 1
