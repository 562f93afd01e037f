"""Exact large-image mode: the stem's receptive field from its layers, the tiled stem equal to the direct stem on
awkward sizes, ``Atlas.forward_from_stem`` equal to ``forward_intermediates``, and ``slide embed --exact`` equal to a
direct forward of the whole image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from slide_support import small_slide
from test_train_support import one_thread  # noqa: F401 (autouse fixture)

import atlas_vision  # noqa: F401
from atlas_vision.slide import SlideError, open_features
from atlas_vision.slide.exact import check_exact_model, stem_geometry, tiled_stem
from atlas_vision.slide.model import load_slide_model
from atlas_vision.slide.open import open_slide
from atlas_vision.slide.resolution import select_resolution
from atlas_vision.slide.run import EmbedOptions, embed_slides


def _model(name: str, dtype=torch.float64):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=0).eval().to(dtype)
    for m in model.modules():  # non-trivial BatchNorm statistics, so eval-mode BN is not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("name", ["test_atlas", "test_atlas_p16", "test_atlas_3stage"])
def test_stem_receptive_field_matches_gradient_support(name: str) -> None:
    model = _model(name)
    geo = stem_geometry(model.stem)
    assert geo.stride == model.patch_size and geo.halo % geo.stride == 0 and geo.halo >= max(geo.left, geo.right)
    size = 2 * (geo.left + geo.right) + 8 * geo.stride
    x = torch.randn(1, 3, size, size, dtype=torch.float64, requires_grad=True)
    i = size // geo.stride // 2  # a token in the middle
    model.stem(x)[0, i, i].sum().backward()
    cols = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 2)) > 0).flatten()
    seen_left, seen_right = i * geo.stride - int(cols.min()), int(cols.max()) - i * geo.stride
    assert seen_left <= geo.left and seen_right <= geo.right  # never sees beyond the computed field
    assert seen_left > geo.left - geo.stride and seen_right > geo.right - geo.stride  # and the bound is tight


@pytest.mark.parametrize("name", ["test_atlas", "test_atlas_p16", "test_atlas_3stage"])
@pytest.mark.parametrize("hw,tile", [((203, 347), 48), ((130, 61), 32), ((64, 64), 1000)])
def test_tiled_stem_equals_direct_stem(name: str, hw, tile: int) -> None:
    model = _model(name)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)

    def to_input(pixels: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(pixels).permute(0, 3, 1, 2).double() / 127.5 - 1

    reads = []

    def read(x: int, y: int, w: int, h: int) -> np.ndarray:
        assert x >= 0 and y >= 0 and x + w <= hw[1] and y + h <= hw[0]  # never outside the image
        reads.append((w, h))
        return image[y : y + h, x : x + w]

    with torch.inference_mode():
        want = model.stem(to_input(image[None]))
    got = tiled_stem(model.stem, read, to_input, hw, tile)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    if tile < max(hw):
        assert len(reads) > 1 and max(max(r) for r in reads) < max(hw)  # really tiled


@pytest.mark.parametrize("batch,hw", [(1, (96, 160)), (3, (72, 40))])
def test_forward_from_stem_equals_forward_intermediates(batch: int, hw) -> None:
    model = _model("test_atlas_3stage", torch.float32)
    x = torch.randn(batch, 3, *hw)
    with torch.inference_mode():
        final, maps = model.forward_intermediates(x)
        tokens = model.stem(x)  # [B, h, w, C]
        final2, maps2 = model.forward_from_stem(tokens.permute(0, 3, 1, 2))
        only = model.forward_from_stem(tokens.permute(0, 3, 1, 2).contiguous(), indices=[1], intermediates_only=True)
    torch.testing.assert_close(final2, final, rtol=0, atol=0)
    for a, b in zip(maps2, maps):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert len(only) == 1 and torch.equal(only[0], maps[1])
    with pytest.raises(ValueError, match=r"expected stem tokens \[B, 24, h, w\]"):
        model.forward_from_stem(torch.zeros(1, 3, 4, 4))


def test_slide_embed_exact_equals_direct_forward(tmp_path: Path) -> None:
    slide = small_slide(tmp_path / "e.tif", 712, 520, seed=5)  # level 1: 356 x 260, not divisible by 32
    opt = EmbedOptions(model="test_atlas", exact=True, level=1, stem_tile=64, dtype="float32", thumbnail_size=128)
    (summary,) = embed_slides([slide], tmp_path / "run", opt, device="cpu")
    assert summary["regions"]["done"] == 1 and summary["fingerprint"]["mode"] == "exact"
    feats = open_features(tmp_path / "run" / "e")
    sm = load_slide_model("test_atlas")
    with open_slide(slide) as reader:
        view = select_resolution(reader, level=1)
        pixels = view.read(0, 0, *view.size)
    with torch.inference_mode():
        final, maps = sm.model.forward_intermediates(sm.to_input(pixels[None]))
        pooled = sm.model.forward_head(final, pre_logits=True)
    for stage, m in enumerate(maps):
        np.testing.assert_allclose(np.asarray(feats.stages[stage][...]), m[0].numpy(), rtol=1e-4, atol=1e-4)
        assert feats.tissue_mask(stage).all()
    np.testing.assert_allclose(summary["embedding"], pooled[0].numpy(), rtol=1e-4, atol=1e-4)
    assert feats.attrs["stitch_rule"].startswith("exact")


def test_exact_mode_needs_an_atlas_model() -> None:
    class Plain:
        model = torch.nn.Linear(2, 2)
        name = "linear"

    with pytest.raises(SlideError, match="--exact needs an Atlas model"):
        check_exact_model(Plain())
