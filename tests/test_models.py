"""The Atlas model contract: every registered test variant, any H x W, timm API, bad input, equivalences."""

from __future__ import annotations

import io

import pytest
import safetensors.torch
import timm
import torch
from tolerances import tol

import atlas_vision
from atlas_vision.models import AtlasConfig, list_models

TEST_MODELS = list_models("test_atlas*")
# the test variants have 3 stages; atlas_tiny (2 stages, patch 8, 1.4M parameters) covers the paper's 2-stage shape
CONTRACT_MODELS = [*TEST_MODELS, "atlas_tiny"]
# non-square, not divisible by the patch or the window, and one larger than the pretrained cfg
SIZES = [(64, 64), (72, 120), (130, 50), (136, 72)]


def _build(name, **kwargs):
    return timm.create_model(name, **kwargs)


@pytest.mark.parametrize("name", CONTRACT_MODELS)
def test_forward_any_size(name):
    model = _build(name, num_classes=5).eval()
    for size in SIZES:
        out = model(torch.randn(2, 3, *size))
        assert out.shape == (2, 5) and torch.isfinite(out).all(), size


@pytest.mark.parametrize("name", CONTRACT_MODELS)
@pytest.mark.parametrize("size", [(64, 64), (136, 72)], ids=["L=S", "L>S"])
def test_every_parameter_gets_a_gradient(name, size):
    model = _build(name, num_classes=3, drop_path_rate=0.2).train()
    model(torch.randn(2, 3, *size)).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a (finite) gradient: {missing}"


@pytest.mark.parametrize("name", CONTRACT_MODELS)
def test_batch_independence(name):
    model = _build(name, num_classes=4).eval()
    x = torch.randn(3, 3, 72, 120)
    with torch.no_grad():
        batched = model(x)
        for i in range(3):
            torch.testing.assert_close(model(x[i : i + 1]), batched[i : i + 1], **tol("model", torch.float32, "fwd"))


@pytest.mark.parametrize("name", ["test_atlas", "test_atlas_3stage"])
def test_grad_checkpointing_gives_equal_outputs_and_grads(name):
    model = _build(name, num_classes=4).train()
    x = torch.randn(2, 3, 72, 120)
    torch.manual_seed(1)
    out = model(x)
    out.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    torch.manual_seed(1)
    out_ckpt = model(x)
    out_ckpt.sum().backward()
    torch.testing.assert_close(out_ckpt, out, **tol("model", torch.float32, "fwd"))
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], **tol("model", torch.float32, "bwd"), msg=n)


@pytest.mark.parametrize("name", TEST_MODELS)
def test_state_dict_round_trip_through_safetensors(name):
    model = _build(name, num_classes=6).eval()
    blob = safetensors.torch.save({k: v.contiguous() for k, v in model.state_dict().items()})
    other = _build(name, num_classes=6).eval()
    other.load_state_dict(safetensors.torch.load(blob), strict=True)
    x = torch.randn(1, 3, 72, 120)
    with torch.no_grad():
        torch.testing.assert_close(other(x), model(x), atol=0, rtol=0)


@pytest.mark.parametrize("name", CONTRACT_MODELS)
def test_forward_intermediates_and_features_only(name):
    model = _build(name, num_classes=0).eval()
    x = torch.randn(2, 3, 72, 120)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x))
        assert len(maps) == len(model.feature_info)
        for fmap, info in zip(maps, model.feature_info):
            assert fmap.shape[:2] == (2, info["num_chs"])
            assert fmap.shape[2] == -(-72 // info["reduction"]) and fmap.shape[3] == -(-120 // info["reduction"])
        features = _build(name, features_only=True).eval()
        feats = features(x)
        assert [f.shape for f in feats] == [m.shape for m in maps]
        assert features.feature_info.channels() == [i["num_chs"] for i in model.feature_info]
        assert features.feature_info.reduction() == [i["reduction"] for i in model.feature_info]
        nhwc = model.forward_intermediates(x, indices=1, output_fmt="NHWC", intermediates_only=True)
        torch.testing.assert_close(nhwc[0], maps[-1].permute(0, 2, 3, 1))


def test_head_contract_and_reset_classifier():
    model = _build("test_atlas", num_classes=7).eval()
    x = torch.randn(2, 3, 64, 96)
    feats = model.forward_features(x)
    assert feats.dim() == 3 and feats.shape[-1] == model.num_features
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)
    assert model.forward_head(feats).shape == (2, 7)
    model.reset_classifier(0)
    assert model(x).shape == (2, model.num_features)
    model.reset_classifier(11)
    assert model(x).shape == (2, 11) and model.get_classifier().out_features == 11
    assert model.pretrained_cfg["first_conv"] == "stem.conv0.0"
    assert "stem.conv0.0.weight" in model.state_dict()
    assert set(model.group_matcher()) == {"stem", "blocks"}


def _decay_by_name(model, weight_decay=0.05):
    """Weight decay of every parameter in the param groups of timm's optimizer factory (what training uses)."""
    from timm.optim import create_optimizer_v2

    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=weight_decay)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            assert names[id(p)] not in decay, f"{names[id(p)]} is in two param groups"
            decay[names[id(p)]] = group["weight_decay"]
    return decay


def test_weight_decay_skips_exactly_biases_and_norms():
    """Atlas declares nothing in ``no_weight_decay()``: timm's factory then decays every weight matrix / conv kernel
    (head, stem, attention, MLP, position-embedding MLP) and no bias or norm parameter."""
    model = _build("test_atlas", num_classes=7)
    decay = _decay_by_name(model)
    params = dict(model.named_parameters())
    assert set(decay) == set(params)
    decayed = {n for n, wd in decay.items() if wd > 0}
    assert decayed == {n for n, p in params.items() if p.ndim > 1 and n not in model.no_weight_decay()}
    assert {"head.weight", "stem.conv0.0.weight"} <= decayed
    assert any(n.endswith("pos_embed.fc1.weight") for n in decayed)
    assert not any(n.endswith(".bias") or ".norm" in n for n in decayed)


@pytest.mark.parametrize("in_chans", [1, 4, 12])
def test_any_number_of_input_channels(in_chans):
    model = _build("test_atlas", in_chans=in_chans, num_classes=2).eval()
    assert model(torch.randn(1, in_chans, 64, 80)).shape == (1, 2)


def test_built_small_run_large_without_reinstantiation():
    model = _build("test_atlas_p16", num_classes=2).eval()  # pretrained cfg 96x96
    with torch.no_grad():
        assert model(torch.randn(1, 3, 1024, 768)).shape == (1, 2)
    layout = model.layout_for(model.token_grid((1024, 768)))
    assert layout[0].grid == (64, 48)


def test_atlas_base_matches_paper_geometry_and_size():
    with torch.device("meta"):
        model = _build("atlas_base", num_classes=100)
    assert sum(p.numel() for p in model.parameters()) == 118_253_604  # spec 2.4: ~118.25M
    layout = model.layout_for(model.token_grid((1024, 1024)))
    assert [g.grid for g in layout.scales] == [(64, 64), (16, 16)]
    assert [g.num_windows for g in layout.scales] == [(4, 4), (1, 1)]
    layout = model.layout_for(model.token_grid((4096, 4096)))
    assert [g.grid for g in layout.scales] == [(256, 256), (64, 64), (16, 16)]
    assert [i["reduction"] for i in model.feature_info] == [16, 64]
    with torch.device("meta"):
        small = _build("atlas_small", num_classes=100)
    assert 30e6 < sum(p.numel() for p in small.parameters()) < 32e6  # spec 2.4: ~31.0M


def test_single_scale_is_window_attention_everywhere():
    model = _build("test_atlas_window", num_classes=2)
    layout = model.layout_for(model.token_grid((200, 168)))
    assert layout.num_scales == 1 and layout[0].num_windows == (7, 6)
    assert len(model.stages) == 3 and all(stage.first_scale == 0 for stage in model.stages)
    assert all(i["reduction"] == 8 for i in model.feature_info)


@pytest.mark.parametrize(
    "x,message",
    [
        (torch.randn(1, 4, 64, 64), r"expected 3 input channels.*got 4"),
        (torch.randn(1, 3, 4, 64), r"too small.*patch_size=8"),
        (torch.randn(3, 64, 64), r"\[B, C, H, W\].*\(3, 64, 64\)"),
    ],
)
def test_bad_input_raises_clear_value_error(x, message):
    model = _build("test_atlas").eval()
    with pytest.raises(ValueError, match=message):
        model(x)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"embed_dim": 30, "num_heads": 4}, "embed_dim=30 must be divisible by num_heads=4"),
        ({"window_size": 1}, "window_size must be >= 2"),
        ({"window_size": 6, "pool_stride": 4}, "divisible by pool_stride"),
        ({"patch_size": 6}, "patch_size must be one of"),
        ({"depths": ()}, "at least one stage"),
        ({"communication": "sideways"}, "communication='sideways' is not valid"),
        ({"head_norm": "group"}, r"head_norm='group' is not valid; choose one of \['layer', 'batch'\]"),
        ({"drop_path_rate": 1.5}, r"drop_path_rate must be in \[0, 1\)"),
        ({"bogus_key": 1}, r"unknown Atlas option\(s\) \['bogus_key'\]"),
    ],
)
def test_invalid_config_raises_clear_value_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        _build("test_atlas", **overrides)


def test_batch_norm_head():
    """``head_norm="batch"`` (the tiny variants): BatchNorm1d without affine in front of the classifier; a training
    batch of one is refused with the fix named; in eval mode each image's output is independent of the batch."""
    model = _build("test_atlas", num_classes=3, head_norm="batch")
    assert isinstance(model.fc_norm, torch.nn.BatchNorm1d) and not model.fc_norm.affine
    assert isinstance(timm.create_model("atlas_tiny").fc_norm, torch.nn.BatchNorm1d)
    assert isinstance(timm.create_model("atlas_small", num_classes=2).fc_norm, torch.nn.LayerNorm)  # paper sizes
    x = torch.randn(3, 3, 64, 48)
    model.train()
    model(x).sum().backward()  # batch statistics; updates the running ones
    assert model.fc_norm.num_batches_tracked == 1
    with pytest.raises(ValueError, match=r"head_norm='batch' needs at least 2 images per batch in training mode"):
        model(x[:1])
    model.eval()
    with torch.no_grad():
        batched = model(x)
        torch.testing.assert_close(model(x[1:2]), batched[1:2], **tol("model", torch.float32, "fwd"))


def test_config_accepts_strings_and_pairs():
    cfg = AtlasConfig(window_size=[8, 4], pool_stride=2, communication="top_down", pool_op="avg")
    assert cfg.window_size == (8, 4) and cfg.pool_stride == (2, 2)
    assert cfg.communication is atlas_vision.Communication.TOP_DOWN


@pytest.mark.parametrize("mode", ["full", "top_down", "bottom_up", "none"])
def test_communication_modes_change_the_function(mode):
    torch.manual_seed(0)
    full = _build("test_atlas", num_classes=3).eval()
    torch.manual_seed(0)
    other = _build("test_atlas", num_classes=3, communication=mode).eval()
    other.load_state_dict(full.state_dict())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        same = torch.allclose(full(x), other(x))
    assert same == (mode == "full")


def _check_compiled(backend):
    model = _build("test_atlas", num_classes=3).train()
    x = torch.randn(2, 3, 64, 96)
    torch.manual_seed(3)
    eager = model(x)
    eager.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    torch.manual_seed(3)
    out = compiled(x)
    out.sum().backward()
    torch.testing.assert_close(out, eager, **tol("compiled", torch.float32, "fwd"))
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], **tol("compiled", torch.float32, "bwd"), msg=n)


def test_torch_compile_full_graph_matches_eager():
    """Dynamo captures the whole model in one graph (no graph breaks); forward and grads match eager."""
    _check_compiled("aot_eager")


@pytest.mark.parametrize("grad_mode", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
def test_torch_compile_inference_full_graph_matches_eager(grad_mode):
    """Inference compiles to one graph too. The CPU default backend (split) once ran its fused kernels only through an
    ``autograd.Function`` whose forward dynamo could not trace under no_grad: fullgraph failed, and without it every
    attention call fell back to eager."""
    import torch._dynamo

    torch._dynamo.reset()
    model = _build("test_atlas", num_classes=3).eval()
    x = torch.randn(1, 3, 64, 96)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with grad_mode():
        eager, out = model(x), compiled(x)
    torch.testing.assert_close(out, eager, **tol("compiled", torch.float32, "fwd"))
    torch._dynamo.reset()


@pytest.mark.slow
def test_torch_compile_inductor_matches_eager():
    """Inductor code generation (minutes on a 2-core CPU)."""
    _check_compiled("inductor")


def test_models_are_registered_with_timm_and_listed():
    for name in ["atlas_base", "atlas_small", "atlas_tiny", "atlas_tiny_window", *TEST_MODELS]:
        assert name in timm.list_models("*atlas*")
    buf = io.StringIO()
    from contextlib import redirect_stdout

    from atlas_vision.cli import main

    with redirect_stdout(buf):
        assert main(["list-models", "atlas_*"]) == 0
    assert buf.getvalue().split() == ["atlas_base", "atlas_small", "atlas_tiny", "atlas_tiny_window"]


@pytest.mark.parametrize("name", ["test_atlas_3stage", "atlas_tiny"])
def test_split_backend_model_equals_sdpa_backend(name):
    """A whole model on the split / LSE-merge backend gives the SDPA backend's outputs and gradients."""
    torch.manual_seed(0)
    sdpa = _build(name, num_classes=3, backend="sdpa").train()
    split = _build(name, num_classes=3, backend="split").train()
    split.load_state_dict(sdpa.state_dict())
    x = torch.randn(3, 3, 136, 72)
    out_a, out_b = sdpa(x), split(x)
    torch.testing.assert_close(out_b, out_a, **tol("model", torch.float32, "fwd"))
    out_a.square().sum().backward()
    out_b.square().sum().backward()
    for (n, p), q in zip(sdpa.named_parameters(), split.parameters()):
        torch.testing.assert_close(q.grad, p.grad, **tol("model", torch.float32, "bwd"), msg=n)
