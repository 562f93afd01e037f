"""benchmarks/window_interaction.py: the second difference is zero for a model additive over the two corners and
not for one that multiplies them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

_SPEC = importlib.util.spec_from_file_location(
    "window_interaction", Path(__file__).resolve().parents[1] / "benchmarks" / "window_interaction.py"
)
window_interaction = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(window_interaction)


class _CornerModel(torch.nn.Module):
    """logit[1] = a + b (additive) or a * b (joint), with a / b the means of the low / high corner."""

    def __init__(self, joint: bool) -> None:
        super().__init__()
        self.joint = joint

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, C, H, W]
        a, b = x[..., :4, :4].mean(dim=(1, 2, 3)), x[..., -4:, -4:].mean(dim=(1, 2, 3))
        one = a * b if self.joint else a + b
        return torch.stack([torch.zeros_like(one), one], dim=1)  # [B, 2]


def test_second_difference_separates_additive_from_joint_models():
    torch.manual_seed(0)
    additive = window_interaction.relative_interaction(_CornerModel(joint=False), (16, 16), 3, frac=0.25)
    joint = window_interaction.relative_interaction(_CornerModel(joint=True), (16, 16), 3, frac=0.25)
    assert additive < 1e-5 and joint > 1e-2
