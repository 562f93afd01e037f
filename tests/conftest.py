"""Shared test settings: deterministic seeds, TF32 off (reference checks compare in true fp32)."""

from __future__ import annotations

import os

import pytest
import torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

# Tests run on CPU by default; TORCH_DEVICE=cuda runs the device-aware ones (test_ops: fast paths in fp32 and bf16)
# on a GPU.
DEVICE = torch.device(os.environ.get("TORCH_DEVICE", "cpu"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
