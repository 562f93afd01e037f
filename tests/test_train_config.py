"""TrainConfig: YAML loading, dotted overrides, type checking, error messages, shipped configs (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_train_support import REPO, write_yaml

from atlas_vision.train import ConfigError, TrainConfig, build_config, dump_yaml, from_dict, to_dict
from atlas_vision.train._cli_args import UsageError, split_options
from atlas_vision.train.cli_train import parse
from atlas_vision.train.config import OptimConfig, accumulation_steps
from atlas_vision.train.config_io import load_yaml

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def test_defaults_roundtrip_through_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(TrainConfig()))
    assert build_config(TrainConfig, path) == TrainConfig()


def test_default_yaml_equals_dataclass_defaults() -> None:
    """configs/default.yaml is a dump of the dataclass defaults (the one place the default recipe lives)."""
    assert build_config(TrainConfig, REPO / "configs" / "default.yaml") == TrainConfig(), (
        "configs/default.yaml drifted from the defaults in train/config.py; regenerate it with "
        "`atlas-vision train --print-config > configs/default.yaml`"
    )


def test_overrides_parse_every_type() -> None:
    cfg = build_config(
        TrainConfig,
        overrides=[
            ("optim.lr", ["3e-4"]),
            ("data.img_size", ["96", "128"]),
            ("data.scale", ["0.5,1"]),
            ("optim.betas", ["0.9,0.95"]),
            ("model.kwargs.communication", ["single_scale"]),
            ("model.kwargs.depths", ["[1, 2]"]),
            ("model.compile", []),
            ("model.channels_last", ["false"]),
            ("optim.eps", ["null"]),
            ("data.root", ["/data"]),
            ("run.precision", ["bf16"]),
            ("schedule.epochs", ["7"]),
        ],
    )
    assert cfg.optim.lr == 3e-4 and cfg.data.img_size == (96, 128) and cfg.data.scale == (0.5, 1.0)
    assert cfg.optim.betas == (0.9, 0.95) and cfg.optim.eps is None
    assert cfg.model.kwargs == {"communication": "single_scale", "depths": [1, 2]}
    assert cfg.model.compile is True and cfg.model.channels_last is False
    assert cfg.data.root == "/data" and cfg.run.precision == "bf16" and cfg.schedule.epochs == 7
    assert build_config(TrainConfig, overrides=[("data.img_size", ["96"])]).data.img_size == (96, 96)


def test_yaml_then_overrides_precedence(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "c.yaml", {"optim": {"lr": "3e-4", "batch_size": 16}, "schedule": {"epochs": 5}})
    cfg = build_config(TrainConfig, path, overrides=[("schedule.epochs", ["9"])])
    assert cfg.optim.lr == 3e-4  # PyYAML reads 3e-4 as a string; accepted for a float
    assert cfg.optim.batch_size == 16 and cfg.schedule.epochs == 9
    assert cfg.optim.opt == OptimConfig().opt  # untouched keys keep their defaults


@pytest.mark.parametrize(
    ("tree", "fragments"),
    [
        ({"optimm": {}}, ["'optimm'", "did you mean 'optim'", "data, model, optim, schedule, run"]),
        ({"optim": {"lrr": 1.0}}, ["'optim.lrr'", "did you mean 'optim.lr'", "weight_decay"]),
        ({"data": {"img_sz": [64, 64]}}, ["'data.img_sz'", "img_size"]),
        ({"optim": {"lr": "fast"}}, ["'optim.lr'", "expected float", "'fast'"]),
        ({"optim": {"batch_size": 8.5}}, ["'optim.batch_size'", "expected int", "8.5"]),
        ({"model": {"compile": "yes"}}, ["'model.compile'", "expected bool"]),
        ({"model": {"kwargs": [1, 2]}}, ["'model.kwargs'", "expected dict"]),
        ({"data": {"img_size": [64, 64, 3]}}, ["'data.img_size'", "expected 2 values"]),
        ({"run": {"precision": "fp64"}}, ["'run.precision'", "'bf16'", "'fp64'"]),
        ({"optim": {"lr": -1.0}}, ["'optim.lr'", "positive", "-1.0"]),
        ({"data": {"task": "imagenet"}}, ["'data.task'", "longrange", "'imagenet'"]),
        ({"optim": 3}, ["'optim'", "expected"]),
    ],
)
def test_config_errors_name_the_key(tree: dict, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(TrainConfig, tree)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        (("optim.lrr", ["1"]), ["'optim.lrr'", "did you mean 'optim.lr'"]),
        (("optim.lr.x", ["1"]), ["'optim.lr.x'", "no sub-key"]),
        (("data.img_size", ["a", "b"]), ["'data.img_size[0]'", "expected int"]),
        (("model.compile", ["maybe"]), ["'model.compile'", "expected bool"]),
        (("optim.lr", []), ["'optim.lr'", "missing value"]),
    ],
)
def test_override_errors_name_the_key(override: tuple[str, list[str]], fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        build_config(TrainConfig, overrides=[override])
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


def test_accumulation_must_divide_evenly() -> None:
    assert accumulation_steps(OptimConfig(batch_size=32, global_batch=2048), world_size=8) == 8
    assert accumulation_steps(OptimConfig(batch_size=32, global_batch=0), world_size=4) == 1
    with pytest.raises(ValueError, match=r"optim.global_batch.*not a multiple.*32 x 3 = 96"):
        accumulation_steps(OptimConfig(batch_size=32, global_batch=2048), world_size=3)


def test_cli_tokens_and_shortcuts(tmp_path: Path) -> None:
    assert split_options(["--a", "1", "2", "--b=x", "--flag", "--n", "-1e-3"]) == [
        ("a", ["1", "2"]),
        ("b", ["x"]),
        ("flag", []),
        ("n", ["-1e-3"]),
    ]
    with pytest.raises(UsageError):
        split_options(["positional"])
    cfg, print_config, show_help = parse(
        ["--epochs", "4", "--seed", "9", "--out", str(tmp_path), "--device", "cpu", "--optim.lr=2e-3", "--print-config"]
    )
    assert (cfg.schedule.epochs, cfg.run.seed, cfg.run.out, cfg.run.device) == (4, 9, str(tmp_path), "cpu")
    assert cfg.optim.lr == 2e-3 and print_config and not show_help
    with pytest.raises(UsageError, match="unknown option --lr"):
        parse(["--lr", "1"])


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_are_valid(path: Path, tmp_path: Path) -> None:
    raw = load_yaml(path)
    cfg = build_config(TrainConfig, path, overrides=[("data.root", [str(tmp_path)])] if raw["data"].get("root") else [])
    assert to_dict(from_dict(TrainConfig, to_dict(cfg))) == to_dict(cfg)
    if path.name.startswith("hr_in100_"):
        o, s = cfg.optim, cfg.schedule
        assert (o.opt, o.lr, o.weight_decay, o.label_smoothing, o.mixup, o.cutmix) == (
            "adamw",
            5e-4,
            0.24,
            0.1,
            0.8,
            1.0,
        )
        assert o.global_batch == 2048 and accumulation_steps(o, world_size=8) * o.batch_size * 8 == 2048
        assert (s.sched, s.min_lr, s.warmup_epochs) == ("cosine", 1e-6, 30)
        assert s.epochs == (320 if "atlas_base" in path.name else 100)
        assert cfg.data.auto_augment == "rand-m9-mstd0.5-inc1" and cfg.data.reprob == 0.25
        assert cfg.model.drop_path_rate == 0.3 and cfg.run.precision == "bf16"
        assert cfg.data.img_size[0] == int(path.stem.rsplit("_", 1)[1])


def test_expected_configs_are_shipped() -> None:
    names = {p.name for p in CONFIGS}
    assert {
        "default.yaml",
        "pathfinder.yaml",
        "hr_in100_atlas_base_1024.yaml",
        "hr_in100_atlas_small_1024.yaml",
        "hr_in100_atlas_small_2048.yaml",
        "hr_in100_atlas_small_4096.yaml",
    } <= names


def test_overriding_one_data_key_keeps_the_default_recipes_other_data_values():
    """Regression: `--data.num_workers 0` once silently reset data.img_size to DataConfig's own default."""
    from atlas_vision.train import TrainConfig, build_config

    default = TrainConfig()
    cfg = build_config(TrainConfig, overrides=[("data.num_workers", ["0"])])
    assert cfg.data.num_workers == 0
    assert cfg.data.img_size == default.data.img_size
    assert cfg.data.train_samples == default.data.train_samples


def _leaf_keys(obj: object, prefix: str = "") -> list[tuple[str, object]]:
    import dataclasses

    out: list[tuple[str, object]] = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        out += _leaf_keys(value, key + ".") if dataclasses.is_dataclass(value) else [(key, value)]
    return out


def test_help_lists_every_key_with_type_and_default(capsys: pytest.CaptureFixture[str]) -> None:
    from atlas_vision.train import cli_train

    assert cli_train.main(["--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for key, default in _leaf_keys(TrainConfig()):
        (line,) = [line for line in lines if line.split()[:1] == [f"--{key}"]]
        assert line.rstrip().endswith(f"= {to_dict(default)!r}"), line
        assert len(line.split()) >= 4, f"no type in {line!r}"
    assert "timm optimizer name" in "\n".join(lines)  # attribute docstrings
    assert "folder task: a directory holding" in "\n".join(lines)  # DataConfig's Google-style Attributes section


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("optim: {lr: 1\n", ["line 2", "bad.yaml"]),
        ("optim:\n  lr: 1\n    batch_size: 2\n", ["line 3", "bad.yaml"]),
        ("- 1\n- 2\n", ["expected a mapping at the top level"]),
    ],
)
def test_malformed_yaml_names_the_file(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        build_config(TrainConfig, path)
    assert "\n" not in str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("tree", "fragment"),
    [
        ({"optim": {"batch_size": "8"}}, "'optim.batch_size': expected int, got '8'"),
        ({"optim": {"batch_size": True}}, "'optim.batch_size': expected int"),
        ({"model": {"compile": 1}}, "'model.compile': expected bool"),
        ({"optim": {"betas": [0.9, "x"]}}, "'optim.betas[1]': expected float"),
        ({"data": {"scale": 0.5}}, "'data.scale': expected tuple[float, float]"),
    ],
)
def test_yaml_scalars_are_strict(tree: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        from_dict(TrainConfig, tree)


def test_yaml_pair_broadcast_and_kwargs_merge(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "c.yaml", {"data": {"img_size": 96}, "model": {"kwargs": {"communication": "none"}}})
    cfg = build_config(TrainConfig, path, overrides=[("model.kwargs.depths", ["[1, 1]"]), ("run.name", ["yes"])])
    assert cfg.data.img_size == (96, 96)
    assert cfg.model.kwargs == {"communication": "none", "depths": [1, 1]}
    assert cfg.run.name == "yes"  # a string field takes its text verbatim (not YAML's boolean `yes`)
