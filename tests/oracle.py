"""The reference oracle (tests/data/reference_oracle): the authors' code run at two tiny configurations.

Helpers shared by the converter, hub and export tests: the matching model overrides, the stored tensors, and a
forward that records the same intermediate tensors the oracle holds.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from safetensors.torch import load_file

import atlas_vision  # noqa: F401  (registers the models)

ORACLE_DIR = Path(__file__).parent / "data" / "reference_oracle"
# the matching atlas_vision model of each case (README of the oracle)
COMMON = {
    "embed_dim": 32,
    "num_heads": 2,
    "mlp_ratio": 4.0,
    "qkv_bias": True,
    "patch_size": 16,
    "window_size": 4,
    "pool_stride": 2,
    "pool_op": "max",
    "communication": "full",
    "stem_hidden": 64,
    "stem_depth": 3,
    "pos_embed_hidden": 512,
    "drop_path_rate": 0.0,
    "in_chans": 3,
    "num_classes": 10,
}
CASES = {
    "2scale": {
        "weights": "reference_tiny_2scale.safetensors",
        "input": "input.safetensors",
        "expected": "expected.safetensors",
        "overrides": dict(COMMON, depths=(2, 1)),
    },
    "3scale": {
        "weights": "reference_tiny_3scale.safetensors",
        "input": "input_3scale.safetensors",
        "expected": "expected_3scale.safetensors",
        "overrides": dict(COMMON, depths=(1, 1, 1)),
    },
}


def weights_path(case: str) -> Path:
    return ORACLE_DIR / CASES[case]["weights"]


def oracle_input(case: str) -> torch.Tensor:
    return load_file(str(ORACLE_DIR / CASES[case]["input"]))["x"]


def oracle_expected(case: str) -> dict[str, torch.Tensor]:
    return load_file(str(ORACLE_DIR / CASES[case]["expected"]))


def oracle_model(case: str, **extra) -> torch.nn.Module:
    """The matching model with the reference weights loaded through the timm pretrained path."""
    overrides = dict(CASES[case]["overrides"], **extra)
    overlay = {"file": str(weights_path(case)), "num_classes": 10}
    return timm.create_model("atlas_base", pretrained=True, pretrained_cfg_overlay=overlay, **overrides).eval()


def recorded_forward(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run ``model(x)`` and record the tensors the oracle stores, under the oracle's names (without ``_fp64``)."""
    record: dict[str, torch.Tensor] = {}
    hooks = [model.stem.register_forward_hook(lambda m, i, o: record.__setitem__("stem", o))]
    hooks.append(model.norm.register_forward_pre_hook(lambda m, i: record.__setitem__("final_tokens", i[0])))
    for s, stage in enumerate(model.stages):
        for b, block in enumerate(stage.blocks):

            def hook(module, inputs, outputs, s=s, b=b):
                first = inputs[2]
                for scale in range(first, len(outputs)):
                    record[f"after_stage{s}_block{b}_scale{scale}"] = outputs[scale]

            hooks.append(block.register_forward_hook(hook))
    try:
        with torch.no_grad():
            record["logits"] = model(x)
    finally:
        for handle in hooks:
            handle.remove()
    return record
