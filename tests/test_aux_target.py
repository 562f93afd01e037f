"""The longrange task's auxiliary target (how many of the two ringed objects are red) and the training-only head
that learns it: the targets, where they exist, the head's logits, the loss, resuming, and the refusals."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file
from test_train_support import one_thread, tiny_config  # noqa: F401  (one_thread: autouse fixture)

import atlas_vision  # noqa: F401  (registers the models)
from atlas_vision.data import DataConfig, build_datasets
from atlas_vision.data.longrange import (
    COLOUR_NAMES,
    LongRangeAuxDataset,
    LongRangeDataset,
    LongRangeParams,
    marked_red_count,
)
from atlas_vision.train import run_training
from atlas_vision.train.aux_head import WithAuxiliaryHead, create_aux_head
from atlas_vision.train.checkpoint import WEIGHTS_FILE, load_state

LONGRANGE = {"task": "longrange", "img_size": [64, 64], "train_samples": 8, "val_samples": 8}


def test_aux_items_are_the_label_and_the_marked_red_count() -> None:
    params = LongRangeParams(img_size=(64, 64))
    plain, aux = LongRangeDataset(48, "train", 5, params), LongRangeAuxDataset(48, "train", 5, params)
    plain.set_epoch(2), aux.set_epoch(2)  # the stream position is honoured
    red = COLOUR_NAMES.index("red")
    counts = []
    for i in range(48):
        image, label = plain[i]
        aux_image, targets = aux[i]
        scene = plain.scene(plain.stream_index(i))
        count = sum(int(scene.colours[k] == red) for k in scene.marked)  # counted independently of the helper
        assert torch.equal(aux_image, image)
        assert targets.dtype == torch.int64 and targets.tolist() == [label, count] == [label, marked_red_count(scene)]
        assert label == int(count != 1)  # "same" iff both ringed objects are red or neither is
        counts.append(count)
    assert set(counts) == {0, 1, 2}


def test_only_the_longrange_training_set_has_the_target(tmp_path: Path) -> None:
    data = build_datasets(DataConfig(**LONGRANGE), seed=0, with_aux_target=True)
    assert data.aux_classes == 3
    assert data.train[0][1].shape == (2,) and isinstance(data.val[0][1], int)
    assert build_datasets(DataConfig(**LONGRANGE), seed=0).aux_classes == 0  # off unless asked for
    pathfinder = DataConfig(task="pathfinder", img_size=(32, 32), train_samples=8, val_samples=8)
    assert build_datasets(pathfinder, seed=0, with_aux_target=True).aux_classes == 0  # no target: nothing changes
    with pytest.raises(ValueError, match=r"data.cache_dir.*--optim.aux_weight 0"):
        build_datasets(DataConfig(**LONGRANGE, cache_dir=str(tmp_path)), seed=0, with_aux_target=True)


def test_the_wrapper_gives_the_models_own_logits() -> None:
    """In training mode (batch statistics in the BatchNorm head) and in eval mode, on a non-square image."""
    torch.manual_seed(0)
    model = timm.create_model("atlas_tiny", num_classes=2)
    head = create_aux_head(model, 3, torch.device("cpu"))
    x = torch.randn(3, 3, 64, 96)
    for train in (True, False):
        reference = copy.deepcopy(model).train(train)
        wrapped = WithAuxiliaryHead(copy.deepcopy(model), head).train(train)
        logits, aux = wrapped(x)
        assert torch.equal(logits, reference(x)) and aux.shape == (3, 3)
        pooled = reference.forward_head(reference.forward_features(x), pre_logits=True)
        assert torch.allclose(aux, head(pooled), atol=1e-6)


def _one_sgd_update(out: Path, aux_weight: float) -> tuple[dict[str, torch.Tensor], dict]:
    """One plain SGD update (lr 1, no momentum, no weight decay, no clipping) on one longrange batch of 8."""
    cfg = tiny_config(
        out,
        data=LONGRANGE,
        optim={
            "opt": "momentum",
            "momentum": 0.0,
            "lr": 1.0,
            "weight_decay": 0.0,
            "clip_grad": 0.0,
            "aux_weight": aux_weight,
        },
        schedule={"warmup_epochs": 0, "min_lr": 1.0},
    )
    assert run_training(cfg)["steps"] == 1
    weights = load_file(str(out / "checkpoints" / "last" / WEIGHTS_FILE))
    return {k: v for k, v in weights.items() if "running_" not in k}, load_state(out / "checkpoints" / "last")


def test_the_aux_loss_moves_the_model_in_proportion_to_its_weight(tmp_path: Path) -> None:
    """The total loss is CE(label) + w * CE(aux): from the same weights and batch, the SGD updates with w = 0, 1, 2
    are g0, g0 + a, g0 + 2a, so the update at w = 2 minus the one at w = 1 equals the one at w = 1 minus w = 0."""
    runs = [_one_sgd_update(tmp_path / f"w{w}", w) for w in (0.0, 1.0, 2.0)]
    (w0, s0), (w1, s1), (w2, _) = runs
    assert s0["aux_head"] is None and s1["aux_head"] is not None  # 0 = no target, no head
    step_a = torch.cat([(w1[k] - w0[k]).flatten() for k in w0])
    step_b = torch.cat([(w2[k] - w1[k]).flatten() for k in w0])
    assert step_a.norm() > 1e-4  # the auxiliary loss reaches the model
    assert torch.allclose(step_a, step_b, atol=1e-5 + 1e-3 * step_a.abs().max().item())


def test_a_run_with_the_target_resumes_exactly(tmp_path: Path) -> None:
    """Two epochs at a constant rate, against one epoch + a resume for the second: the same model and head (the
    head's weights and its optimizer state must both come back from state.pt)."""
    one = {
        "data": {**LONGRANGE, "train_samples": 16},
        "optim": {"batch_size": 8, "lr": 1e-3},
        "schedule": {"warmup_epochs": 0, "min_lr": 1e-3, "epochs": 1},
    }
    two = {**one, "schedule": {**one["schedule"], "epochs": 2}}
    whole = run_training(tiny_config(tmp_path / "whole", **two))
    run_training(tiny_config(tmp_path / "part", **one))
    resumed = run_training(tiny_config(tmp_path / "part", **two, run={"resume": str(tmp_path / "part")}))
    assert resumed["steps"] == whole["steps"] == 4
    for name in ("whole", "part"):
        assert load_state(tmp_path / name / "checkpoints" / "last")["aux_head"] is not None
    a, b = (load_file(str(tmp_path / n / "checkpoints" / "last" / WEIGHTS_FILE)) for n in ("whole", "part"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha, hb = (load_state(tmp_path / n / "checkpoints" / "last")["aux_head"] for n in ("whole", "part"))
    assert all(torch.equal(ha[k], hb[k]) for k in ha)


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"optim.aux_weight.*>= 0.*-1"):
        tiny_config(tmp_path / "neg", data=LONGRANGE, optim={"aux_weight": -1.0})
    with pytest.raises(ValueError, match=r"mixup/cutmix.*--optim.aux_weight 0"):
        run_training(tiny_config(tmp_path / "mix", data=LONGRANGE, optim={"mixup": 0.8}))
    run_training(tiny_config(tmp_path / "off", data=LONGRANGE, optim={"aux_weight": 0.0}))
    with pytest.raises(ValueError, match=r"without an auxiliary target.*optim.aux_weight"):
        run_training(
            tiny_config(tmp_path / "off", data=LONGRANGE, schedule={"epochs": 2}, run={"resume": str(tmp_path / "off")})
        )
