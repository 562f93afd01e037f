"""Hub folders: save_pretrained / load_pretrained through timm's own local-dir: and hf-hub: paths; the convert and
export CLIs (hub format)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import timm.models._hub as timm_hub
import torch
from oracle import CASES, oracle_expected, oracle_input, weights_path
from test_train_support import one_thread, tiny_config  # noqa: F401 (autouse fixture)

from atlas_vision import cli_convert
from atlas_vision.export import cli as export_cli
from atlas_vision.hub import load_pretrained, save_pretrained
from atlas_vision.models import Atlas, AtlasConfig
from atlas_vision.train import run_training

FP64 = {"atol": 1e-10, "rtol": 0.0}


def _same_outputs(a, b, size=(72, 120)):
    x = torch.randn(2, a.in_chans, *size)
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x), atol=0, rtol=0)


def test_save_and_load_roundtrip_keeps_architecture_weights_and_preprocessing(tmp_path):
    model = timm.create_model("test_atlas_3stage", num_classes=3, pool_op="avg")
    folder = save_pretrained(
        model,
        tmp_path / "hub",
        data_config={"input_size": (3, 96, 64), "mean": (0.5,) * 3, "std": (0.25,) * 3},
        label_names=["a", "b", "c"],
    )
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "test_atlas_3stage"
    assert config["model_args"]["window_size"] == [4, 6] and config["model_args"]["pool_op"] == "avg"
    assert config["label_names"] == ["a", "b", "c"]
    loaded = load_pretrained(folder)
    assert loaded.config == model.config
    assert tuple(loaded.pretrained_cfg["input_size"]) == (3, 96, 64)
    assert tuple(loaded.pretrained_cfg["mean"]) == (0.5,) * 3
    _same_outputs(model, loaded)


def test_model_built_without_timm_saves_its_full_config(tmp_path):
    config = AtlasConfig(
        embed_dim=24,
        num_heads=3,
        depths=(1, 1),
        patch_size=8,
        window_size=(4, 2),
        pool_stride=2,
        stem_hidden=8,
        stem_depth=1,
        pos_embed_hidden=8,
        num_classes=4,
        routing="reference_raster",
    )
    model = Atlas(config)
    loaded = load_pretrained(save_pretrained(model, tmp_path / "hub"))
    assert loaded.config == config
    _same_outputs(model, loaded)


def test_hf_hub_prefix_reads_the_same_folder(tmp_path, monkeypatch):
    """timm.create_model("hf-hub:ORG/NAME") with the download served from a local folder (no network)."""
    model = timm.create_model("test_atlas", num_classes=2)
    folder = save_pretrained(model, tmp_path / "hub")
    asked = []

    def fake_download(repo_id, filename, revision=None, cache_dir=None, **_):
        asked.append((repo_id, filename))
        path = folder / filename
        if not path.is_file():
            raise timm_hub.EntryNotFoundError(filename)
        return str(path)

    monkeypatch.setattr(timm_hub, "hf_hub_download", fake_download)
    loaded = timm.create_model("hf-hub:someone/test-atlas", pretrained=True)
    assert ("someone/test-atlas", "config.json") in asked and ("someone/test-atlas", "model.safetensors") in asked
    _same_outputs(model, loaded)


def test_hub_folder_with_reference_weights_loads_through_the_filter(tmp_path):
    """A folder whose model.safetensors still has the reference key names (e.g. as the authors publish it)."""
    converted = tmp_path / "converted"
    assert (
        cli_convert.main(
            [
                str(weights_path("2scale")),
                "--from",
                "reference",
                "--out",
                str(converted),
                "--set",
                "num_heads=2",
                "--set",
                "window_size=4",
                "--set",
                "pool_stride=2",
            ]
        )
        == 0
    )
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "config.json").write_text((converted / "config.json").read_text())
    (raw / "model.safetensors").write_bytes(weights_path("2scale").read_bytes())
    for folder in (converted, raw):
        model = load_pretrained(folder).double().eval()
        with torch.no_grad():
            logits = model(oracle_input("2scale").double())
        torch.testing.assert_close(logits, oracle_expected("2scale")["logits_fp64"], **FP64)
        assert model.config.embed_dim == 32 and model.config.depths == CASES["2scale"]["overrides"]["depths"]


def test_convert_cli_errors_exit_2(tmp_path, capsys):
    # not a checkpoint
    (tmp_path / "notes.txt").write_text("hello\n")
    assert cli_convert.main([str(tmp_path / "notes.txt"), "--from", "reference", "--out", str(tmp_path / "o")]) == 2
    assert "not a" in capsys.readouterr().err
    # a native checkpoint is not a reference one
    native = tmp_path / "native.safetensors"
    save_pretrained(timm.create_model("test_atlas"), tmp_path / "n")
    native.write_bytes((tmp_path / "n" / "model.safetensors").read_bytes())
    assert cli_convert.main([str(native), "--from", "reference", "--out", str(tmp_path / "o")]) == 2
    assert "reference key names" in capsys.readouterr().err
    # num_heads that does not divide the width
    args = [str(weights_path("2scale")), "--from", "reference", "--out", str(tmp_path / "o"), "--set", "num_heads=5"]
    assert cli_convert.main(args) == 2
    assert "divisible by num_heads=5" in capsys.readouterr().err


def test_load_pretrained_bad_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_pretrained(tmp_path)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hub") / "run"
    run_training(tiny_config(out))
    return out


def test_export_cli_hub_from_a_training_run(run_dir, tmp_path):
    from atlas_vision.train.evaluate import load_checkpoint

    out = tmp_path / "hub"
    assert export_cli.main(["--checkpoint", str(run_dir), "--format", "hub", "--out", str(out)]) == 0
    loaded = load_checkpoint(run_dir)
    model = load_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    assert config["label_names"] == loaded.class_names
    assert tuple(model.pretrained_cfg["input_size"]) == (loaded.meta["in_chans"], *loaded.meta["img_size"])
    assert tuple(model.pretrained_cfg["mean"]) == tuple(loaded.meta["mean"])
    x = torch.randn(2, loaded.meta["in_chans"], *loaded.meta["img_size"])
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), loaded.model(x), atol=0, rtol=0)


def test_export_cli_usage_errors(tmp_path, capsys):
    assert export_cli.main(["--checkpoint", str(tmp_path), "--format", "hub", "--out", str(tmp_path / "o")]) == 2
    assert "no checkpoint found" in capsys.readouterr().err
    args = ["--checkpoint", str(tmp_path), "--format", "onnx", "--out", "x.onnx", "--min-size", "64"]
    assert export_cli.main(args) == 2
    assert "--min-size and --max-size go together" in capsys.readouterr().err
