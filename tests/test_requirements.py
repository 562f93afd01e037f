"""The timm floor: a clear error for a timm too old for the layers, and the same floors as pyproject.toml's pins."""

import re
from pathlib import Path

import pytest
import timm
import torch
from timm.layers import LayerNorm2d, Mlp

from atlas_vision.requirements import MIN_TIMM, MIN_TORCH, check_timm_version, release


@pytest.mark.parametrize("version", ["1.0.12", "1.0.21", "1.0.30", "0.9.16", "1.0.30.post1"])
def test_a_timm_older_than_the_floor_is_refused_by_name(version):
    with pytest.raises(ImportError, match=rf"timm >= 1\.0\.31.*found timm {re.escape(version)}"):
        check_timm_version(version)


@pytest.mark.parametrize("version", ["1.0.31", "1.0.32.dev0", "1.1.0", "2.0"])
def test_the_floor_and_newer_are_accepted(version):
    check_timm_version(version)


def test_an_unreadable_version_is_an_error_naming_it():
    with pytest.raises(ValueError, match="'unknown'"):
        check_timm_version("unknown")


def test_the_installed_timm_takes_the_factory_arguments_the_floor_promises():
    check_timm_version(timm.__version__)
    norm = LayerNorm2d(4, device="cpu", dtype=torch.float64)
    mlp = Mlp(4, hidden_features=8, device="cpu", dtype=torch.float64)
    assert norm.weight.dtype == mlp.fc1.weight.dtype == torch.float64


def test_the_installed_timm_records_a_data_config_in_hub_configs():
    import inspect

    from timm.models._hub import save_config_for_hf

    assert "data_config" in inspect.signature(save_config_for_hf).parameters


def _pinned_floor(package: str) -> tuple[int, ...]:
    """The release in pyproject.toml's ``"<package>>=X.Y[.Z]"`` dependency."""
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    pinned = re.search(rf'"{package}>=([\d.]+)"', pyproject)
    assert pinned is not None, f"pyproject.toml has no {package}>= pin"
    return release(pinned.group(1))


def test_pyproject_pins_the_same_floor():
    assert _pinned_floor("timm") == MIN_TIMM


def test_pyproject_pins_the_torch_floor_the_suite_was_run_on():
    assert _pinned_floor("torch") == MIN_TORCH
    assert release(torch.__version__) >= MIN_TORCH
