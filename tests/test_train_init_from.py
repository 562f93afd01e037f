"""``--model.init_from``: a run starts from earlier weights (fine-tuning; the two-stage 3-D recipe)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file
from test_train_support import one_thread, tiny_config  # noqa: F401 (fixture)

from atlas_vision.train import run_training
from atlas_vision.train.checkpoint import CheckpointError
from atlas_vision.train.config import ModelConfig
from atlas_vision.train.factory import create_model
from atlas_vision.train.init_weights import init_from_weights

VOLUME = {"task": "longrange3d", "volume_size": [48, 48, 48], "train_samples": 8, "val_samples": 4}


def test_two_stage_volume_run_keeps_every_weight_but_the_new_classifier(tmp_path: Path) -> None:
    """Stage 1 on the 3-class count target, stage 2 on same/different from its run directory: every tensor but
    the classifier arrives as stage 1 left it, the classifier is new (2 classes), and the path is stored absolute."""
    stage1 = tiny_config(tmp_path / "count", data={**VOLUME, "target": "count"}, model={"name": "test3d_atlas"})
    assert run_training(stage1)["steps"] == 1
    counted = create_model(ModelConfig(name="test3d_atlas"), num_classes=3, in_chans=1)
    assert init_from_weights(counted, tmp_path / "count") == []  # same shapes: nothing left fresh

    fresh = create_model(ModelConfig(name="test3d_atlas"), num_classes=2, in_chans=1)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    left_fresh = init_from_weights(fresh, tmp_path / "count" / "checkpoints" / "last")
    assert left_fresh == ["head.weight", "head.bias"]
    loaded = fresh.state_dict()
    for key, tensor in counted.state_dict().items():
        if key in left_fresh:
            torch.testing.assert_close(loaded[key], before[key], rtol=0, atol=0)
        else:
            torch.testing.assert_close(loaded[key], tensor, rtol=0, atol=0)
    assert any(not torch.equal(before[k], loaded[k]) for k in loaded if k not in left_fresh)

    stage2 = tiny_config(
        tmp_path / "same",
        data=VOLUME,
        model={"name": "test3d_atlas", "init_from": "count"},
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)  # a relative init_from, resolved against the working directory
        assert run_training(stage2)["steps"] == 1
    saved = yaml.safe_load((tmp_path / "same" / "config.yaml").read_text())
    assert saved["model"]["init_from"] == str((tmp_path / "count").resolve())


def test_init_from_refuses_other_architectures_and_missing_paths(tmp_path: Path) -> None:
    model = create_model(ModelConfig(name="test3d_atlas"), num_classes=2, in_chans=1)
    other = create_model(ModelConfig(name="test3d_atlas_aniso"), num_classes=2, in_chans=1)
    save_file(other.state_dict(), str(tmp_path / "aniso.safetensors"))
    with pytest.raises(CheckpointError, match=r"config key 'model.init_from': .*weight '.*' has shape|has no weight"):
        init_from_weights(model, tmp_path / "aniso.safetensors")
    extra = dict(model.state_dict()) | {"adapter.weight": torch.zeros(3)}
    save_file({k: v.contiguous() for k, v in extra.items()}, str(tmp_path / "extra.safetensors"))
    with pytest.raises(CheckpointError, match=r"1 weight\(s\) the model lacks, first 'adapter.weight'"):
        init_from_weights(model, tmp_path / "extra.safetensors")
    with pytest.raises(FileNotFoundError, match=r"config key 'model.init_from': nothing at '.*nowhere'"):
        init_from_weights(model, tmp_path / "nowhere")
