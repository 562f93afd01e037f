"""Pathfinder: presets, validity of every difficulty at 32 and 64 px, geometry invariants, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atlas_vision.data._snakes import distance_to_segments
from atlas_vision.data.config import DIFFICULTIES
from atlas_vision.data.pathfinder import PathfinderDataset, pathfinder_preset


def test_presets_follow_the_lra_table() -> None:
    p32, p64, p128, p256 = (pathfinder_preset(s, 14) for s in (32, 64, 128, 256))
    assert (p32.paddle_length, p32.paddle_thickness, p32.marker_radius, p32.seed_distance, p32.continuity) == (
        2.0,
        0.5,
        1.5,
        7.0,
        1.0,
    )
    assert p64.paddle_thickness == 1.0 and p64.marker_radius == 2.5 and p64.seed_distance == 12.0
    assert p128.paddle_margins == (2.0, 3.0) and p128.paddle_thickness == 1.5 and p128.seed_distance == 20.0
    assert p256.padding == 22 and p256.paddle_margins == (3.0,) and p256.seed_distance == 27.0
    assert all(p.distractor_length == 4 for p in (p32, p64, p128, p256))  # 14 // 3
    assert [p.num_distractor_snakes for p in (p32, p64, p128, p256)] == [5, 5, 8, 7]  # 20, 22, 35, 30 // 4
    easy = pathfinder_preset(64, 6)
    assert easy.distractor_length == 2 and easy.num_distractor_snakes == 11
    with pytest.raises(ValueError, match="size"):
        pathfinder_preset(96)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("difficulty", list(DIFFICULTIES))
def test_every_difficulty_generates_valid_images(size: int, difficulty: str) -> None:
    cl = DIFFICULTIES[difficulty]
    ds = PathfinderDataset(6, "train", 0, pathfinder_preset(size, cl))
    p = ds.params
    a = p.antialias
    for i in range(6):
        x, y = ds[i]
        assert x.shape == (1, size, size) and x.dtype == torch.float32 and y in (0, 1)
        assert x.max() > 0.0 and (x > -0.9).float().mean() < 0.5  # some ink, mostly background
        scene = ds.scene(i)
        assert scene.label == y and len(scene.snakes[0]) == len(scene.snakes[1]) == cl
        assert all(len(s) == p.distractor_length for s in scene.snakes[2:])
        # markers: A's start, and the end of A (connected) or of B (not connected)
        start, end = scene.markers
        assert np.allclose(start, scene.snakes[0][0, :2])
        assert np.allclose(end, scene.snakes[0 if y == 1 else 1][-1, 2:])
        # snakes never touch: clearance (thickness + margin) up to one canvas pixel of mask rounding
        clearance = (p.paddle_thickness + scene.margin) * a
        for j, snake in enumerate(scene.snakes):
            others = np.concatenate([s for k, s in enumerate(scene.snakes) if k != j])
            points = np.concatenate([snake[:, :2], snake[:, 2:], (snake[:, :2] + snake[:, 2:]) / 2])
            assert min(distance_to_segments(py, px, others) for py, px in points) > clearance - 1.5
        # everything inside the canvas
        allseg = np.concatenate(scene.snakes)
        assert allseg.min() >= 0 and allseg.max() <= size * a - 1


def test_bigger_presets_render() -> None:
    for size in (128, 256):
        x, _ = PathfinderDataset(1, "val", 3, pathfinder_preset(size, 14))[0]
        assert x.shape == (1, size, size)


def test_deterministic_balanced_and_distinct() -> None:
    p = pathfinder_preset(32, 14)
    a, b = PathfinderDataset(40, "train", 5, p), PathfinderDataset(40, "train", 5, p)
    assert torch.equal(a[3][0], b[3][0])
    assert not torch.equal(a[3][0], a[4][0])
    assert not torch.equal(a[3][0], PathfinderDataset(40, "val", 5, p)[3][0])
    labels = [a.scene(i).label for i in range(40)]
    assert labels.count(1) == 20
