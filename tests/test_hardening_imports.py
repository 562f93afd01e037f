"""Import weight, timm registration through the post-import hook, list-models, and the model-side input checks."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_atlas_vision_imports_neither_torch_nor_timm_nor_mixers_nor_trainer() -> None:
    out = _run(
        "import sys, atlas_vision\n"
        "print(sorted(m for m in ('torch', 'timm', 'atlas_vision.mixers', 'atlas_vision.train') if m in sys.modules))"
    )
    assert out == "[]"


def test_timm_registration_after_lazy_import_and_mixer_net_only_with_mixers() -> None:
    # One process (each fresh timm import costs seconds): timm is first imported by the model code while
    # atlas_vision.models is half-imported (the post-import hook must not hit a circular import), the variants are
    # registered (the 3-D ones too: timm.create_model('atlas3d_small') after `import atlas_vision`), mixer_net only
    # once atlas_vision.mixers is imported.
    out = _run(
        "import atlas_vision\n"
        "from atlas_vision.models import Atlas\n"
        "import timm\n"
        "before = timm.is_model('mixer_net')\n"
        "m = timm.create_model('test_atlas', num_classes=3)\n"
        "m3 = timm.create_model('test3d_atlas', num_classes=3)\n"
        "from atlas_vision._timm_registration import ensure_registered\n"
        "ensure_registered('mixer_net')  # what train.factory does for --model.name mixer_net\n"
        "print(type(m).__name__, type(m3).__name__, before, timm.is_model('mixer_net'))"
    )
    assert out == "Atlas Atlas3D False True"


@pytest.mark.slow
def test_timm_registration_when_timm_was_imported_first() -> None:
    assert _run("import timm, atlas_vision\nprint(timm.is_model('atlas_base'), timm.is_model('atlas3d_small'))") == (
        "True True"
    )


def test_cli_help_and_list_models_do_not_import_torch() -> None:
    out = _run(
        "import sys, io, contextlib\n"
        "from atlas_vision.cli import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    main(['--help']); main(['list-models']); main(['--version'])\n"
        "print('torch' in sys.modules, 'timm' in sys.modules, 'atlas_tiny' in buf.getvalue())"
    )
    assert out == "False False True"


def test_variant_names_match_configs() -> None:
    from atlas_vision.models import VARIANT_CONFIGS, VARIANT_CONFIGS_3D, VARIANT_NAMES, VARIANT_NAMES_3D

    assert tuple(VARIANT_CONFIGS) == VARIANT_NAMES
    assert tuple(VARIANT_CONFIGS_3D) == VARIANT_NAMES_3D


def test_timm_registration_when_timm_is_imported_after_atlas_vision_imports_no_model_code() -> None:
    out = _run(
        "import sys, atlas_vision, timm\n"
        "print(timm.is_model('atlas_base'), timm.is_model('atlas3d_small'), "
        "sorted(m for m in ('atlas_vision.models.atlas', 'atlas_vision.models.atlas3d') if m in sys.modules))"
    )
    assert out == "True True []"


def test_list_models_params_counts_the_requested_head(capsys: pytest.CaptureFixture[str]) -> None:
    from atlas_vision.models.cli import main

    assert main(["atlas_tiny", "--params", "--num-classes", "100"]) == 0
    with_100 = capsys.readouterr().out
    assert main(["atlas_tiny", "--params", "--num-classes", "0"]) == 0
    without = capsys.readouterr().out
    assert "(100 classes)" in with_100 and "(0 classes)" in without
    m100, m0 = (float(text.split("\t")[1].split("M")[0]) for text in (with_100, without))
    assert m100 > m0  # the head (64 * 100 + 100 parameters) is counted


@pytest.mark.parametrize(
    ("out_indices", "match"),
    [
        ((0, 0), "names a stage twice"),
        ((0, -3), "names a stage twice"),
        ((0, 3), "stage 3 does not exist"),
        (4, "1..3"),
    ],
)
def test_features_only_rejects_duplicate_or_missing_stages(out_indices, match: str) -> None:
    import timm

    import atlas_vision  # noqa: F401

    with pytest.raises(ValueError, match=match):
        timm.create_model("test_atlas", features_only=True, out_indices=out_indices)


def test_features_only_maps_agree_with_feature_info() -> None:
    import timm

    import atlas_vision  # noqa: F401

    model = timm.create_model("test_atlas", features_only=True, out_indices=(0, 2))
    maps = model(torch.randn(1, 3, 64, 64))
    assert len(maps) == len(model.feature_info.channels()) == 2


def test_forward_intermediates_rejects_duplicates() -> None:
    import timm

    import atlas_vision  # noqa: F401

    model = timm.create_model("test_atlas", num_classes=2)
    with pytest.raises(ValueError, match="names a stage twice"):
        model.forward_intermediates(torch.randn(1, 3, 64, 64), indices=[1, 1])


def test_input_of_another_dtype_is_a_clear_type_error() -> None:
    import timm

    import atlas_vision  # noqa: F401

    model = timm.create_model("test_atlas", num_classes=2).eval()
    x = torch.randn(1, 3, 64, 64)
    with pytest.raises(
        TypeError, match=r"input dtype torch.float64 does not match the model's weights \(torch.float32"
    ):
        model(x.double())
    with pytest.raises(TypeError, match="torch.uint8"):
        model((x * 255).to(torch.uint8))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # under autocast a float input of any dtype is fine
        assert model(x.bfloat16()).shape == (1, 2)
    assert model(x).shape == (1, 2)


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("embed_dim", "64", "an int"),
        ("embed_dim", 32.0, "an int"),
        ("num_heads", True, "an int"),
        ("mlp_ratio", "4", "a number"),
        ("qkv_bias", 1, "a bool"),
        ("window_size", (4.0, 4), "an int or a pair of ints"),
    ],
)
def test_atlas_config_wrong_types_name_the_field(field: str, value: object, kind: str) -> None:
    from atlas_vision.models import AtlasConfig

    with pytest.raises(TypeError, match=rf"^AtlasConfig\.{field} must be {kind}, got"):
        AtlasConfig(**{field: value})


def test_atlas_config_type_error_through_timm() -> None:
    import timm

    import atlas_vision  # noqa: F401

    with pytest.raises(TypeError, match=r"AtlasConfig\.embed_dim must be an int, got '64'"):
        timm.create_model("test_atlas", embed_dim="64")
