"""The authors' checkpoints load exactly: the reference oracle (2 and 3 scales), strict key mapping, safe reading."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import timm
import torch
from oracle import CASES, oracle_expected, oracle_input, oracle_model, recorded_forward, weights_path
from safetensors.torch import load_file, save_file
from tolerances import tol

from atlas_vision.models.convert_reference import (
    UNUSED_REFERENCE_KEYS,
    CheckpointMismatchError,
    check_fits,
    convert_reference_state_dict,
    infer_reference_config,
    map_reference_key,
)
from atlas_vision.models.weights_file import CheckpointFormatError, UnsafeCheckpointError, read_state_dict

FP64 = {"atol": 1e-10, "rtol": 0.0}


def _compare_all(record, expected, skip=()):
    """Every stored fp64 tensor of the oracle against the recorded one; returns the names compared."""
    names = []
    for name, want in expected.items():
        if not name.endswith("_fp64") or name in skip:
            continue
        key = "logits" if name == "logits_fp64" else name[: -len("_fp64")]
        torch.testing.assert_close(record[key], want, **FP64, msg=lambda m, key=key: f"{key}: {m}")
        names.append(key)
    return names


# ------------------------------------------------------------------------------------------------ the key mapping
def test_every_reference_key_is_mapped_or_listed_unused_and_every_model_key_is_filled():
    for case in CASES:
        reference = read_state_dict(weights_path(case))
        converted, unused = convert_reference_state_dict(reference)
        assert len(converted) + len(unused) == len(reference)
        assert unused and all(UNUSED_REFERENCE_KEYS.fullmatch(k) for k in unused)
        # exactly the per-stage BatchNorm + Linear head StackMSA builds and Atlas.forward never calls
        stages = {k.split(".")[1] for k in reference if k.startswith("atlas_models.")}
        assert len(unused) == 7 * len(stages)
        model = oracle_model(case)
        assert set(converted) == set(model.state_dict())
        check_fits(converted, model)


def test_unknown_reference_key_is_an_error_naming_it():
    with pytest.raises(CheckpointMismatchError, match=r"atlas_models\.0\.levels\.1\.blocks"):
        map_reference_key("atlas_models.0.levels.1.blocks.0.blocks.0.attn.q.weight", 3)


def test_inferred_config_matches_the_oracle_readme():
    for case, spec in CASES.items():
        inferred = infer_reference_config(read_state_dict(weights_path(case)))
        for key, value in inferred.items():
            assert spec["overrides"][key] == value, (case, key)


# ------------------------------------------------------------------------------------------------ 2 scales: exact
@pytest.mark.parametrize("backend", ["auto", "sdpa", "split", "reference"])
def test_two_scale_oracle_float64_every_block(backend):
    model = oracle_model("2scale", backend=backend).double()
    record = recorded_forward(model, oracle_input("2scale").double())
    names = _compare_all(record, oracle_expected("2scale"))
    assert len(names) == 8  # logits, stem, final tokens, 2 + 2 + 1 block outputs


def test_two_scale_oracle_float32_logits():
    model = oracle_model("2scale")
    with torch.no_grad():
        logits = model(oracle_input("2scale"))
    torch.testing.assert_close(logits, oracle_expected("2scale")["logits_fp32"], **tol("model", torch.float32, "fwd"))


# ------------------------------------------------------------------------------------------------ 3 scales: routing
def _misrouted_windows() -> torch.Tensor:
    """bool [4, 4] over the scale-0 window grid: where the reference's raster pairing (window i -> coarse window
    i // 4) differs from the spatial one ((r // 2, c // 2)) for the 2x2-window scale 1."""
    rows, cols = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    raster = (rows * 4 + cols) // 4
    spatial = (rows // 2) * 2 + cols // 2
    return raster != spatial


def test_three_scale_spatial_routing_differs_exactly_in_the_misrouted_windows():
    expected = oracle_expected("3scale")
    record = recorded_forward(oracle_model("3scale").double(), oracle_input("3scale").double())
    torch.testing.assert_close(record["stem"], expected["stem_fp64"], **FP64)
    misrouted = _misrouted_windows()
    assert int(misrouted.sum()) == 8
    diff = (record["after_stage0_block0_scale0"] - expected["after_stage0_block0_scale0_fp64"]).abs()  # [1, 16, 16, C]
    per_window = diff[0].view(4, 4, 4, 4, -1).amax(dim=(1, 3, 4))  # [window row, window col]
    assert (per_window[~misrouted] <= 1e-10).all(), per_window
    assert (per_window[misrouted] > 1e-3).all(), per_window
    # the coarser scales and the logits move too, but the logits alone would pass a float32 tolerance
    assert (record["after_stage0_block0_scale1"] - expected["after_stage0_block0_scale1_fp64"]).abs().max() > 1e-3
    assert (record["logits"] - expected["logits_fp64"]).abs().max() > 1e-6


def test_three_scale_reference_raster_routing_reproduces_the_oracle():
    model = oracle_model("3scale", routing="reference_raster").double()
    names = _compare_all(recorded_forward(model, oracle_input("3scale").double()), oracle_expected("3scale"))
    assert len(names) == 9  # logits, stem, final tokens, 3 + 2 + 1 block outputs
    with torch.no_grad():
        logits = oracle_model("3scale", routing="reference_raster")(oracle_input("3scale"))
    torch.testing.assert_close(logits, oracle_expected("3scale")["logits_fp32"], **tol("model", torch.float32, "fwd"))


def test_reference_raster_routing_needs_the_sdpa_backend():
    with pytest.raises(ValueError, match="routing='reference_raster' needs backend"):
        timm.create_model("test_atlas", routing="reference_raster", backend="split")


# ------------------------------------------------------------------------------------------------ one set per scale
def test_one_weight_set_per_scale_layout_of_a_large_trained_size():
    """The reference at 2048/4096 px has 3 scales with 2 stages, so stage 0 holds 3 weight sets; ``scale_sets=3``
    reproduces that key set (here the 3-scale oracle's stage 0 and 1 grafted onto a 2-stage model)."""
    reference = read_state_dict(weights_path("3scale"))
    two_stage = {k: v for k, v in reference.items() if not k.startswith("atlas_models.2.")}
    inferred = infer_reference_config(two_stage)
    assert inferred["depths"] == (1, 1) and inferred["scale_sets"] == 3
    overrides = dict(CASES["3scale"]["overrides"], depths=(1, 1), scale_sets=3)
    model = timm.create_model("atlas_base", **overrides)
    converted, _ = convert_reference_state_dict(two_stage)
    check_fits(converted, model)
    with pytest.raises(CheckpointMismatchError, match="no tensor for model key|key"):
        check_fits(converted, timm.create_model("atlas_base", **dict(overrides, scale_sets=None)))
    # any size still works, and small images get at least 3 scales so every weight is used
    model.load_state_dict(converted)
    for size in [(64, 64), (256, 256), (200, 328)]:
        assert model.layout_for(model.token_grid(size)).num_scales >= 3
        assert torch.isfinite(model.eval()(torch.randn(1, 3, *size))).all()


# ------------------------------------------------------------------------------------------------ bad checkpoints
def test_another_width_names_the_first_mismatching_key_and_both_shapes():
    overrides = dict(CASES["2scale"]["overrides"], embed_dim=64, num_heads=2)
    with pytest.raises(CheckpointMismatchError, match=r"'stem\.conv0\.3\.weight'.*\[8, 64, 3, 3\].*\[16, 64, 3, 3\]"):
        timm.create_model(
            "atlas_base", pretrained=True, pretrained_cfg_overlay={"file": str(weights_path("2scale"))}, **overrides
        )


def test_another_architecture_is_an_error():
    overrides = dict(CASES["2scale"]["overrides"], depths=(1, 1, 1))
    with pytest.raises(CheckpointMismatchError, match="another architecture"):
        timm.create_model(
            "atlas_base", pretrained=True, pretrained_cfg_overlay={"file": str(weights_path("2scale"))}, **overrides
        )


@pytest.mark.parametrize("container", ["bare", "model", "state_dict", "module_prefix"])
def test_containers_are_unwrapped(tmp_path, container):
    reference = load_file(str(weights_path("2scale")))
    wrapped = {
        "bare": reference,
        "model": {"model": reference, "epoch": 3},
        "state_dict": {"state_dict": reference},
        "module_prefix": {"state_dict": {f"module.{k}": v for k, v in reference.items()}},
    }[container]
    path = tmp_path / "ckpt.pth"
    torch.save(wrapped, path)
    assert set(read_state_dict(path)) == set(reference)
    model = timm.create_model(
        "atlas_base",
        pretrained=True,
        pretrained_cfg_overlay={"file": str(path), "num_classes": 10},
        **CASES["2scale"]["overrides"],
    ).eval()
    with torch.no_grad():
        logits = model.double()(oracle_input("2scale").double())
    torch.testing.assert_close(logits, oracle_expected("2scale")["logits_fp64"], **FP64)


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("writer", ["torch_save", "raw_pickle"])
def test_a_pickle_that_would_run_code_is_refused(tmp_path, writer):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    payload = {"state_dict": {"w": torch.zeros(1)}, "hook": _RunsCode(marker)}
    if writer == "torch_save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(UnsafeCheckpointError, match="refused.*can run arbitrary code"):
        read_state_dict(path)
    assert not marker.exists()


def test_truncated_and_non_checkpoint_files_are_clear_errors(tmp_path):
    good = weights_path("2scale").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(good[: len(good) // 2])
    torch.save(load_file(str(weights_path("2scale"))), tmp_path / "full.pth")
    full = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(full[: len(full) // 3])
    (tmp_path / "notes.txt").write_text("these are not weights\n")
    (tmp_path / "list.pth").write_bytes(b"")
    torch.save([1, 2, 3], tmp_path / "list2.pth")
    for name in ["cut.safetensors", "cut.pth", "notes.txt", "list.pth", "list2.pth"]:
        with pytest.raises(CheckpointFormatError, match="not a|no state_dict|truncated"):
            read_state_dict(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="no weight file"):
        read_state_dict(tmp_path / "missing.pth")


def test_converted_checkpoint_loads_through_the_same_filter(tmp_path):
    converted, _ = convert_reference_state_dict(read_state_dict(weights_path("2scale")))
    path = tmp_path / "converted.safetensors"
    save_file(converted, str(path))
    model = timm.create_model(
        "atlas_base",
        pretrained=True,
        pretrained_cfg_overlay={"file": str(path), "num_classes": 10},
        **CASES["2scale"]["overrides"],
    ).eval()
    with torch.no_grad():
        logits = model.double()(oracle_input("2scale").double())
    torch.testing.assert_close(logits, oracle_expected("2scale")["logits_fp64"], **FP64)


def test_new_classifier_keeps_the_backbone(tmp_path):
    """Fine-tuning: a different num_classes re-initialises the head and loads everything else."""
    overrides = dict(CASES["2scale"]["overrides"], num_classes=4)
    model = timm.create_model(
        "atlas_base",
        pretrained=True,
        pretrained_cfg_overlay={"file": str(weights_path("2scale")), "num_classes": 10},
        **overrides,
    )
    reference = load_file(str(weights_path("2scale")))
    assert model.head.weight.shape == (4, 32)
    torch.testing.assert_close(model.fc_norm.weight, reference["fc_norm.weight"])


def test_pretrained_cfgs_name_hub_ids_and_the_untagged_default_is_unchanged():
    assert timm.create_model("atlas_base", pretrained=False).num_classes == 1000
    for name in ["atlas_base.hr_in100_r1024", "atlas_small.hr_in100_r1024"]:
        cfg = timm.models.get_pretrained_cfg(name)
        assert cfg.hf_hub_id == f"YalaLab/{name}" and cfg.num_classes == 100
    with pytest.raises(RuntimeError, match="No pretrained weights exist"):
        timm.create_model("test_atlas", pretrained=True)
