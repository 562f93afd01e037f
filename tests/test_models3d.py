"""Atlas-3D: the timm model contract on volumes, the 3-D stem and position embedding, bad input."""

from __future__ import annotations

import pytest
import timm
import torch
from tolerances import tol

import atlas_vision  # noqa: F401  (registers the models)
from atlas_vision.layers import WindowPosEmbed
from atlas_vision.layers.stem3d import ConvStem3d
from atlas_vision.models import VARIANT_CONFIGS_3D, Atlas3D, Atlas3DConfig, list_models
from atlas_vision.ops import MultiScaleLayout

TEST_MODELS = list_models("test3d_atlas*")
# non-cubic, not divisible by the patch or the window; the last one has more scales than stages (L > S)
SIZES = [(32, 24, 40), (17, 50, 33), (9, 16, 70)]


def _build(name, **kwargs):
    return timm.create_model(name, **kwargs)


def test_registered_3d_variants():
    assert set(list_models("atlas3d_*")) == {"atlas3d_base", "atlas3d_small", "atlas3d_tiny", "atlas3d_tiny_window"}
    assert set(TEST_MODELS) == {"test3d_atlas", "test3d_atlas_aniso", "test3d_atlas_window"}
    for name in (*list_models("atlas3d_*"), *TEST_MODELS):
        assert name in timm.list_models("*atlas*")
    with torch.device("meta"):
        small = _build("atlas3d_small", num_classes=2)
    assert isinstance(small, Atlas3D) and small.patch_size == (16, 16, 16)
    assert small.layout_for(small.token_grid((512, 512, 512))).describe().splitlines() == [
        "scale 0: 32x32x32 tokens, 4x4x4 window(s) of 8x8x8",
        "scale 1: 16x16x16 tokens, 2x2x2 window(s) of 8x8x8",
        "scale 2: 8x8x8 tokens, 1x1x1 window(s) of 8x8x8",
    ]


@pytest.mark.parametrize("name", [*TEST_MODELS, "atlas3d_tiny"])
@pytest.mark.parametrize("batch", [1, 3])
def test_forward_any_volume_size(name, batch):
    model = _build(name, num_classes=5).eval()
    for size in SIZES:
        if any(s < p for s, p in zip(size, model.config.patch_sides)):
            continue
        with torch.no_grad():
            out = model(torch.randn(batch, 1, *size))
        assert out.shape == (batch, 5) and torch.isfinite(out).all(), size


@pytest.mark.parametrize("name", TEST_MODELS)
def test_every_parameter_gets_a_gradient_3d(name):
    model = _build(name, num_classes=3, drop_path_rate=0.1).train()
    for size in [(32, 24, 40), (48, 64, 64)]:  # L = S and L > S
        model.zero_grad()
        model(torch.randn(2, 1, *size)).sum().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        if model.config.communication.value == "full":
            assert not missing, f"{size}: parameters without a (finite) gradient: {missing}"


def test_batch_independence_3d():
    model = _build("test3d_atlas", num_classes=4).eval()
    x = torch.randn(3, 1, 17, 50, 33)
    with torch.no_grad():
        batched = model(x)
        for i in range(3):
            torch.testing.assert_close(model(x[i : i + 1]), batched[i : i + 1], **tol("model", torch.float32, "fwd"))


def test_grad_checkpointing_gives_equal_outputs_and_grads_3d():
    model = _build("test3d_atlas", num_classes=4).train()
    x = torch.randn(2, 1, 24, 32, 28)
    out = model(x)
    out.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    out_ckpt = model(x)
    out_ckpt.sum().backward()
    torch.testing.assert_close(out_ckpt, out, **tol("model", torch.float32, "fwd"))
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], **tol("model", torch.float32, "bwd"), msg=n)


@pytest.mark.parametrize("name", ["test3d_atlas", "test3d_atlas_aniso"])
def test_forward_intermediates_ncdhw_and_features_only(name):
    model = _build(name, num_classes=0).eval()
    x = torch.randn(2, 1, 17, 50, 70)
    layout = model.layout_for(model.token_grid(x.shape[2:]))
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        nd = model.forward_intermediates(x, output_fmt="NDHWC", intermediates_only=True)
        alias = model.forward_intermediates(x, output_fmt="NCHW", intermediates_only=True)
        assert final.shape == model.forward_features(x).shape
    assert len(maps) == len(model.stages)
    for stage, (fmap, last) in enumerate(zip(maps, nd)):
        grid = layout[model.stages[stage].first_scale].grid
        assert fmap.shape == (2, model.num_features, *grid)
        assert last.shape == (2, *grid, model.num_features)
        torch.testing.assert_close(fmap, last.movedim(-1, 1), rtol=0, atol=0)
        torch.testing.assert_close(alias[stage], fmap, rtol=0, atol=0)
    features = _build(name, features_only=True).eval()
    with torch.no_grad():
        feats = features(x)
    assert [f.shape for f in feats] == [m.shape for m in maps]
    assert features.feature_info.reduction() == [model.config.stage_reduction(s) for s in range(len(model.stages))]
    with pytest.raises(ValueError, match="output_fmt must be one of"):
        model.forward_intermediates(x, output_fmt="NHCW")


def test_forward_head_and_pre_logits():
    model = _build("test3d_atlas", num_classes=7).eval()
    x = torch.randn(2, 1, 32, 24, 40)
    with torch.no_grad():
        tokens = model.forward_features(x)
        assert tokens.dim() == 3 and tokens.shape[0] == 2 and tokens.shape[2] == model.num_features
        assert model.forward_head(tokens, pre_logits=True).shape == (2, model.num_features)
        torch.testing.assert_close(model.forward_head(tokens), model(x))
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)


@pytest.mark.parametrize("in_chans", [1, 2, 4])
def test_any_number_of_input_channels_3d(in_chans):
    model = _build("test3d_atlas", in_chans=in_chans, num_classes=2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, in_chans, 16, 20, 24)).shape == (1, 2)


def test_backends_agree_on_a_whole_3d_model():
    x = torch.randn(2, 1, 24, 36, 44)
    outs = {}
    for backend in ("sdpa", "split", "reference"):
        torch.manual_seed(3)
        model = _build("test3d_atlas_aniso", num_classes=3, backend=backend).eval()
        with torch.no_grad():
            outs[backend] = model(x)
    torch.testing.assert_close(outs["split"], outs["reference"], **tol("model", torch.float32, "fwd"))
    torch.testing.assert_close(outs["sdpa"], outs["reference"], **tol("model", torch.float32, "fwd"))


def test_window_control_is_single_scale():
    model = _build("test3d_atlas_window", num_classes=2).eval()
    layout = model.layout_for(model.token_grid((64, 64, 64)))
    assert layout.num_scales == 1 and layout[0].num_windows == (4, 4, 4)


@pytest.mark.parametrize(
    "name,x,message",
    [
        ("test3d_atlas", torch.randn(2, 1, 32, 32), r"expected a volume batch \[B, C, D, H, W\], got \(2, 1, 32, 32\)"),
        ("test3d_atlas", torch.randn(2, 1, 32, 32), r"2-D image batch.*add a depth axis"),
        ("test_atlas", torch.randn(2, 3, 8, 32, 32), r"expected an image batch \[B, C, H, W\].*3-D model"),
        ("test3d_atlas", torch.randn(1, 1, 3, 32, 32), r"volume 3x32x32 is too small.*patch_size=\(4, 4, 4\)"),
        ("test3d_atlas_aniso", torch.randn(1, 1, 8, 7, 64), r"volume 8x7x64 is too small.*patch_size=\(4, 8, 8\)"),
        ("test3d_atlas", torch.randn(1, 3, 16, 16, 16), r"expected 1 input channels.*got 3"),
    ],
)
def test_bad_input_raises_clear_value_error_3d(name, x, message):
    model = _build(name, num_classes=2).eval()
    with pytest.raises(ValueError, match=message):
        model(x)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"patch_size": 32}, r"patch_size must be one of \(4, 8, 16\).*got \(32, 32, 32\)"),
        ({"patch_size": (4, 16)}, r"patch_size must be an int or a \(d, h, w\) tuple of 3 ints, got \(4, 16\)"),
        ({"window_size": (4, 4)}, r"window_size must be an int or a \(d, h, w\) tuple"),
        ({"window_size": (4, 6, 4), "pool_stride": 4}, "divisible by pool_stride"),
    ],
)
def test_invalid_3d_config_raises_clear_value_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        Atlas3DConfig(**overrides)


def test_2d_model_refuses_a_3d_config():
    from atlas_vision.models import Atlas

    with pytest.raises(ValueError, match="Atlas takes a 2-D config"):
        Atlas(VARIANT_CONFIGS_3D["test3d_atlas"])


@pytest.mark.parametrize("patch", [(4, 4, 4), (8, 8, 8), (16, 16, 16), (4, 16, 16), (8, 4, 16)])
def test_stem3d_gives_ceil_tokens_per_axis(patch):
    stem = ConvStem3d(1, 32, patch, hidden=4, depth=1).eval()
    volume = (33, 17, 50)
    with torch.no_grad():
        out = stem(torch.randn(2, 1, *volume))
    assert out.shape == (2, *(-(-v // p) for v, p in zip(volume, patch)), 32)


def test_pos_embed_3d_repeats_per_window_and_covers_a_single_window_scale():
    embed = WindowPosEmbed(8, 16, ndim=3)
    layout = MultiScaleLayout.from_grid((9, 8, 10), (4, 4, 2), 2)
    like = torch.zeros(1)
    fine = embed(layout[0], like)  # multi-window scale
    assert fine.shape == (9, 8, 10, 8)
    torch.testing.assert_close(fine[4:8], fine[0:4], rtol=0, atol=0)  # same pattern in every window (depth)
    torch.testing.assert_close(fine[:, :, 2:4], fine[:, :, 0:2], rtol=0, atol=0)
    assert not torch.allclose(fine[0, 0, 0], fine[1, 0, 0])  # but it varies inside a window
    coarse = layout[-1]
    assert coarse.is_single_window
    assert embed(coarse, like).shape == (*coarse.grid, 8)
    with pytest.raises(ValueError, match="for 3-D token grids, got a 2-D scale"):
        embed(MultiScaleLayout.from_grid((8, 8), 4, 2)[0], like)
