"""Export: ONNX (dynamo, opset 18) in onnxruntime and torch.export programs match eager PyTorch at several sizes
(non-square included); sizes outside the exported range are refused at the call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from tolerances import tol

from atlas_vision.export import (
    OnnxAtlas,
    dynamic_size_range,
    export_onnx,
    export_program,
    fixed_size,
    load_exported,
    save_exported,
)
from atlas_vision.export import cli as export_cli
from atlas_vision.hub import save_pretrained

onnx = pytest.importorskip("onnx")  # the `export` extra
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

# patch 8, 4x4 windows, stride 4: multiples of 32 px; 64..128 px per side keep 2 scales (scale 1 one window)
DYNAMIC = {"depths": (1, 1), "pool_stride": 4, "embed_dim": 16, "num_heads": 2, "num_classes": 3}
IN_RANGE = [(64, 64), (96, 128), (128, 64)]
OUT_OF_RANGE = [(160, 64), (64, 32), (80, 64), (96, 100)]
FP32 = tol("model", torch.float32, "fwd")


def _model(name="test_atlas", **overrides):
    torch.manual_seed(0)
    return timm.create_model(name, **overrides).eval()


def _eager(model, x):
    with torch.no_grad():
        return model(x).numpy()


@pytest.fixture(scope="module")
def dynamic_artifacts(tmp_path_factory) -> tuple[torch.nn.Module, Path, Path]:
    """One dynamic trace (64..128 px per side) saved as a torch.export program and as ONNX."""
    root = tmp_path_factory.mktemp("export")
    model = _model(**DYNAMIC)
    spec = dynamic_size_range(model, (64, 64), (128, 128))
    program = export_program(model, spec)
    return model, save_exported(program, spec, root / "model.pt2"), export_onnx(program, spec, root / "model.onnx")


def test_dynamic_range_is_validated():
    model = _model(**DYNAMIC)
    spec = dynamic_size_range(model, (64, 64), (128, 128))
    assert spec.multiple == (32, 32) and not spec.is_fixed
    with pytest.raises(ValueError, match="multiple of patch_size x window = 32x32"):
        dynamic_size_range(model, (64, 64), (120, 128))
    with pytest.raises(ValueError, match="another layout"):
        dynamic_size_range(model, (64, 64), (160, 128))  # 160 px: scale 1 needs 2 windows
    with pytest.raises(ValueError, match="multi-window coarse scale"):
        dynamic_size_range(_model("test_atlas"), (96, 96), (128, 128))  # stride 2: scale 1 has 2x2 windows


def test_onnx_dynamic_matches_eager_at_several_sizes(dynamic_artifacts):
    model, _, path = dynamic_artifacts
    proto = onnx.load(str(path))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 18
    runner = OnnxAtlas(path)
    for size in IN_RANGE:
        for batch in (1, 3):
            x = torch.randn(batch, 3, *size)
            np.testing.assert_allclose(runner(x), _eager(model, x), atol=FP32["atol"], rtol=FP32["rtol"])


def test_onnx_refuses_sizes_outside_the_exported_range(dynamic_artifacts):
    model, _, path = dynamic_artifacts
    runner = OnnxAtlas(path)
    for size in OUT_OF_RANGE:
        with pytest.raises(ValueError, match=rf"input size {size[0]}x{size[1]} is not supported.*H in \[64, 128\]"):
            runner(np.zeros((1, 3, *size), dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected an image batch \[B, 3, H, W\]"):
        runner(np.zeros((1, 1, 64, 64), dtype=np.float32))
    # the reason for the check: onnxruntime alone would answer at 160 px, with the wrong layout
    x = torch.randn(1, 3, 160, 64)
    raw = runner.session.run(None, {"image": x.numpy()})[0]
    assert np.abs(raw - _eager(model, x)).max() > 1e-4


def test_export_cli_onnx_fixed_size_with_padding_and_windowed_coarse_scales(tmp_path):
    """72x120 with stride 2: 3 scales, scale 1 in 2x2 windows, every scale padded -- one fixed graph, via the CLI."""
    model = _model("test_atlas", depths=(1, 1), embed_dim=16, num_heads=2, num_classes=4)
    save_pretrained(model, tmp_path / "hub")
    out = tmp_path / "fixed.onnx"
    argv = ["--checkpoint", str(tmp_path / "hub"), "--format", "onnx", "--out", str(out), "--size", "72x120"]
    assert export_cli.main(argv) == 0
    runner = OnnxAtlas(out)
    x = torch.randn(2, 3, 72, 120)
    np.testing.assert_allclose(runner(x), _eager(model, x), atol=FP32["atol"], rtol=FP32["rtol"])
    with pytest.raises(ValueError, match="exactly 72x120"):
        runner(torch.randn(2, 3, 120, 72))


def test_torch_export_dynamic_matches_eager_and_refuses_other_sizes(dynamic_artifacts):
    model, path, _ = dynamic_artifacts
    loaded = load_exported(path)
    for size in IN_RANGE:
        for batch in (1, 3):  # batch 1: the program once carried a guard refusing it (ceil_div in ops/layout.py)
            x = torch.randn(batch, 3, *size)
            with torch.no_grad():
                torch.testing.assert_close(loaded(x), model(x), **FP32)
    with pytest.raises(ValueError, match="input size 160x64 is not supported"):
        loaded(torch.randn(1, 3, 160, 64))


def test_export_bad_artifacts(tmp_path):
    with pytest.raises(FileNotFoundError):
        OnnxAtlas(tmp_path / "missing.onnx")
    with pytest.raises(FileNotFoundError):
        load_exported(tmp_path / "missing.pt2")
    with pytest.raises(ValueError, match="smaller than patch_size"):
        fixed_size(_model(), (4, 64))
    with pytest.raises(TypeError, match="export supports Atlas models"):
        export_onnx(torch.nn.Linear(2, 2), fixed_size(_model(), (64, 64)), tmp_path / "x.onnx")
    with pytest.raises(ValueError, match="opset must be >= 18"):
        export_onnx(_model(), fixed_size(_model(), (64, 64)), tmp_path / "x.onnx", opset=17)


@pytest.mark.slow
@pytest.mark.parametrize("size", [(512, 512), (1024, 768)])
def test_atlas_small_onnx_dynamic_matches_eager(tmp_path, size):
    model = _model("atlas_small", num_classes=10)
    path = export_onnx(model, dynamic_size_range(model, (512, 512), (1024, 1024)), tmp_path / "small.onnx")
    x = torch.randn(1, 3, *size)
    np.testing.assert_allclose(OnnxAtlas(path)(x), _eager(model, x), atol=1e-4, rtol=1e-3)
