"""Slide heads: shapes on grids of several sizes, gradients reach every parameter, a slide's output depends
neither on the other slides of its batch nor on padding, and bad input gets a clear error."""

from __future__ import annotations

import pytest
import timm
import torch

import atlas_vision  # noqa: F401  (registers the slide heads)
from atlas_vision.slidelearn.grid_input import pack_grid, tissue_box

HEADS = ("slide_meanpool", "slide_abmil", "slide_atlas")
FEATURES = 6
SMALL = {"slide_atlas": {"embed_dim": 16, "num_heads": 2, "depths": (1, 1), "pos_embed_hidden": 8}}


def make_head(name: str, num_classes: int = 3, **extra) -> torch.nn.Module:
    return timm.create_model(name, in_chans=FEATURES + 1, num_classes=num_classes, **SMALL.get(name, {}), **extra)


def random_slide(h: int, w: int, seed: int, tissue: float = 0.7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    valid = torch.rand(h, w, generator=g) < tissue
    valid[h // 2, w // 2] = True  # at least one tissue cell
    return torch.randn(FEATURES, h, w, generator=g), valid


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("grid", [(1, 1), (3, 5), (17, 9), (32, 24)])
@pytest.mark.parametrize("batch", [1, 3])
def test_output_shape(name: str, grid: tuple[int, int], batch: int) -> None:
    model = make_head(name).eval()
    x = torch.stack([pack_grid(*random_slide(*grid, seed=b)) for b in range(batch)])
    with torch.no_grad():
        out = model(x)
    assert out.shape == (batch, 3)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", HEADS)
def test_features_without_classifier(name: str) -> None:
    model = make_head(name, num_classes=0).eval()
    x = pack_grid(*random_slide(9, 13, seed=0))[None]
    with torch.no_grad():
        out = model(x)
    assert out.shape == (1, model.num_features)
    model.reset_classifier(4)
    with torch.no_grad():
        assert model(x).shape == (1, 4)


@pytest.mark.parametrize("name", HEADS)
def test_every_parameter_gets_a_gradient(name: str) -> None:
    model = make_head(name).train()
    x = torch.stack([pack_grid(*random_slide(11, 19, seed=b), size=(12, 20)) for b in range(3)])
    model(x).square().sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: {pname} has no gradient"
        assert p.grad.abs().sum() > 0, f"{name}: {pname} has an all-zero gradient"


@pytest.mark.parametrize("name", HEADS)
def test_batch_and_padding_independence(name: str) -> None:
    """Slide 0 alone at its own size == slide 0 padded into a batch with two other (different-size) slides."""
    model = make_head(name).eval()
    slides = [random_slide(7, 10, seed=1), random_slide(15, 6, seed=2), random_slide(16, 16, seed=3)]
    with torch.no_grad():
        alone = model(pack_grid(*slides[0])[None])
        batch = model(torch.stack([pack_grid(f, v, size=(16, 16)) for f, v in slides]))
        reordered = model(torch.stack([pack_grid(f, v, size=(20, 18)) for f, v in slides[::-1]]))
    torch.testing.assert_close(batch[0:1], alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(reordered.flip(0), batch, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", HEADS)
def test_features_of_background_cells_are_ignored(name: str) -> None:
    """What a grid holds at cells marked invalid (not computed) never reaches the output."""
    model = make_head(name).eval()
    features, valid = random_slide(9, 12, seed=4)
    x = pack_grid(features, valid)[None]
    noisy = x.clone()
    noisy[0, :FEATURES][:, ~valid] = 100.0 * torch.randn(FEATURES, int((~valid).sum()))
    with torch.no_grad():
        torch.testing.assert_close(model(noisy), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", HEADS)
def test_output_depends_on_tissue_features(name: str) -> None:
    """The counterpart: changing one tissue cell changes the output (so the tests above can fail)."""
    model = make_head(name).eval()
    features, valid = random_slide(9, 12, seed=5)
    x = pack_grid(features, valid)[None]
    changed = x.clone()
    r, c = 4, 6  # the centre cell, always tissue
    changed[0, :FEATURES, r, c] += 5.0
    with torch.no_grad():
        assert not torch.allclose(model(changed), model(x), atol=1e-6)


@pytest.mark.parametrize("name", HEADS)
def test_slide_without_tissue_gives_finite_output_and_gradients(name: str) -> None:
    model = make_head(name).train()
    features, _ = random_slide(5, 6, seed=6)
    x = torch.stack([pack_grid(features, torch.zeros(5, 6, dtype=torch.bool)), pack_grid(*random_slide(5, 6, 7))])
    out = model(x)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", HEADS)
def test_wrong_channel_count_is_a_clear_error(name: str) -> None:
    model = make_head(name)
    with pytest.raises(ValueError, match=r"expected 7 channels \(6 features \+ 1 mask\), got 5"):
        model(torch.zeros(1, 5, 4, 4))
    with pytest.raises(ValueError, match=r"\[B, C \+ 1, H, W\]"):
        model(torch.zeros(7, 4, 4))


def test_abmil_attention_is_a_distribution_over_tissue() -> None:
    model = make_head("slide_abmil").eval()
    features, valid = random_slide(8, 9, seed=8)
    x = pack_grid(features, valid, size=(10, 10))[None]
    with torch.no_grad():
        _, weights = model.attention_weights(x)
    assert weights.shape == (1, 10, 10)
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0))
    assert (weights[0, :8, :9][~valid] == 0).all() and (weights[0, 8:] == 0).all()


def test_tissue_box() -> None:
    valid = torch.zeros(6, 7, dtype=torch.bool)
    valid[1, 2] = valid[4, 5] = True
    assert tissue_box(valid) == (1, 5, 2, 6)
    assert tissue_box(torch.zeros(3, 4, dtype=torch.bool)) == (0, 3, 0, 4)


def test_pack_grid_errors() -> None:
    with pytest.raises(ValueError, match="does not fit the padded size 4x4"):
        pack_grid(torch.zeros(2, 5, 3), torch.ones(5, 3, dtype=torch.bool), size=(4, 4))
    with pytest.raises(ValueError, match="mask shape"):
        pack_grid(torch.zeros(2, 5, 3), torch.ones(3, 5, dtype=torch.bool))


def test_heads_build_through_the_training_factory() -> None:
    from atlas_vision.train.config import ModelConfig
    from atlas_vision.train.factory import create_model

    for name in HEADS:
        model = create_model(ModelConfig(name=name, kwargs=SMALL.get(name, {})), num_classes=2, in_chans=9)
        assert model(torch.zeros(2, 9, 5, 5)).shape == (2, 2)
    with pytest.raises(ValueError, match="rejected"):
        create_model(ModelConfig(name="slide_abmil", kwargs={"no_such_option": 1}), num_classes=2, in_chans=9)
