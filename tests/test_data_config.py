"""DataConfig: defaults, YAML-style coercion and validation messages."""

from __future__ import annotations

import dataclasses

import pytest

from atlas_vision.data import DataConfig


def test_defaults_are_valid_and_simple_types() -> None:
    cfg = DataConfig()
    assert cfg.task == "longrange" and cfg.img_size == (128, 128) and cfg.difficulty == "hard"
    for f in dataclasses.fields(DataConfig):
        assert f.default is not dataclasses.MISSING, f"{f.name} needs a default"


def test_lists_from_yaml_become_tuples() -> None:
    cfg = DataConfig(img_size=[96, 160], scale=[0.5, 1])  # type: ignore[arg-type]
    assert cfg.img_size == (96, 160) and cfg.scale == (0.5, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"task": "imagenet"}, "task"),
        ({"difficulty": "medium"}, "difficulty"),
        ({"img_size": (128,)}, "img_size"),
        ({"img_size": (32, 32)}, "img_size"),  # longrange needs >= 64
        ({"img_size": (100.5, 128)}, "img_size"),
        ({"task": "pathfinder", "img_size": (96, 96)}, "img_size"),
        ({"task": "pathfinder", "img_size": (64, 128)}, "img_size"),
        ({"train_samples": 0}, "train_samples"),
        ({"val_samples": -1}, "val_samples"),
        ({"reprob": 1.5}, "reprob"),
        ({"hflip": -0.1}, "hflip"),
        ({"scale": (0.9, 0.5)}, "scale"),
        ({"interpolation": "cubic"}, "interpolation"),
        ({"auto_augment": "randaug-m9"}, "auto_augment"),
        ({"num_workers": -1}, "num_workers"),
        ({"task": "folder"}, "root"),
        ({"object_size": 40}, "object_size"),
        ({"fake_classes": 1}, "fake_classes"),
    ],
)
def test_invalid_values_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        DataConfig(**kwargs)


def test_valid_non_default_configs() -> None:
    DataConfig(task="pathfinder", img_size=(32, 32), difficulty="easy")
    DataConfig(task="folder", root="/data/hr-in100", img_size=(1024, 768), auto_augment="rand-m9-mstd0.5-inc1")
    DataConfig(task="longrange", img_size=(4096, 64))
    assert DataConfig(difficulty="intermediate").contour_length == 9
