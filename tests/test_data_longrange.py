"""The longrange task: determinism, shapes, balance, geometry and the trivial-statistics baseline."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from atlas_vision.data.longrange import PALETTE, LongRangeDataset, LongRangeParams


def _ds(size: tuple[int, int] = (128, 128), n: int = 400, split: str = "train", seed: int = 0) -> LongRangeDataset:
    return LongRangeDataset(n, split, seed, LongRangeParams(img_size=size))


def test_deterministic_and_distinct() -> None:
    a, b = _ds(), _ds()
    x0, y0 = a[7]
    x1, y1 = b[7]
    assert torch.equal(x0, x1) and y0 == y1
    assert not torch.equal(a[7][0], a[8][0])
    assert not torch.equal(a[7][0], _ds(seed=1)[7][0])
    assert not torch.equal(a[7][0], _ds(split="val")[7][0])


@pytest.mark.parametrize("size", [(64, 64), (96, 160), (160, 96), (128, 128), (257, 131), (1024, 768)])
def test_shapes_any_size(size: tuple[int, int]) -> None:
    x, y = _ds(size, n=2)[1]
    assert x.shape == (3, *size) and x.dtype == torch.float32 and y in (0, 1)
    assert -1.0 <= x.min() and x.max() <= 1.0


def test_labels_exactly_balanced() -> None:
    ds = _ds(n=200)
    labels = [ds.scene(i).label for i in range(200)]
    assert labels.count(0) == labels.count(1) == 100


@pytest.mark.parametrize("size", [(128, 128), (96, 160), (512, 384)])
def test_marked_pair_far_apart_and_label_matches_colours(size: tuple[int, int]) -> None:
    ds = _ds(size, n=60)
    p = ds.params
    for i in range(60):
        scene = ds.scene(i)
        a, b = scene.marked
        assert a != b
        dist = float(np.hypot(*(scene.yx[a] - scene.yx[b])))
        assert dist >= p.min_distance * math.hypot(*size)
        assert scene.label == int(scene.colours[a] == scene.colours[b])
        # objects never overlap: one per grid cell
        assert len({(int(y) // p.cell, int(x) // p.cell) for y, x in scene.yx}) == len(scene.yx)


def test_no_64px_window_holds_both_marked_objects_at_128px() -> None:
    ds = _ds((128, 128), n=300)
    p = ds.params
    for i in range(300):
        scene = ds.scene(i)
        (ya, xa), (yb, xb) = (scene.yx[k] for k in scene.marked)
        # two objects of size s fit in one 64 x 64 window (anywhere) only if |dy| and |dx| are both <= 64 - s
        assert max(abs(ya - yb), abs(xa - xb)) > 64 - p.size


def _fit_logistic(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor) -> torch.Tensor:
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mu) / sd, (x_test - mu) / sd
    w = torch.zeros(x_train.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x_train @ w + b, y_train) + 1e-3 * w.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return ((x_test @ w + b) > 0).float()


def test_trivial_global_statistics_are_at_chance() -> None:
    """Logistic regression on per-channel means + colour histograms of the whole image cannot beat chance."""
    ds = _ds((96, 96), n=800)
    colours = np.array(PALETTE + ((30, 30, 30), (245, 245, 245)))  # + background, ring: every pixel is one of these
    keys = np.sort(colours @ np.array([65536, 256, 1]))
    feats, labels = [], []
    for i in range(800):
        image, label = ds.render(i)
        pixels = image.reshape(-1, 3).astype(np.int64)
        hist = np.bincount(np.searchsorted(keys, pixels @ np.array([65536, 256, 1])), minlength=len(keys))
        coarse = np.bincount((pixels // 64) @ np.array([16, 4, 1]), minlength=64)  # 4 x 4 x 4 RGB bins
        feats.append(np.concatenate([pixels.mean(0) / 255, hist / len(pixels), coarse / len(pixels)]))
        labels.append(label)
    x = torch.tensor(np.array(feats), dtype=torch.float32)
    y = torch.tensor(labels, dtype=torch.float32)
    pred = _fit_logistic(x[:400], y[:400], x[400:])
    acc = (pred == y[400:]).float().mean().item()
    assert 0.40 <= acc <= 0.60, f"trivial baseline accuracy {acc:.3f} is not near chance"


def test_baseline_has_power_when_the_evidence_is_given() -> None:
    """Positive control: the same classifier on the marked pair's colour pair (one-hot of 16) learns the label."""
    ds = _ds((96, 96), n=400)
    feats, labels = [], []
    for i in range(400):
        scene = ds.scene(i)
        a, b = scene.marked
        onehot = np.zeros(16)
        onehot[scene.colours[a] * 4 + scene.colours[b]] = 1
        feats.append(onehot)
        labels.append(scene.label)
    x = torch.tensor(np.array(feats), dtype=torch.float32)
    y = torch.tensor(labels, dtype=torch.float32)
    acc = (_fit_logistic(x[:200], y[:200], x[200:]) == y[200:]).float().mean().item()
    assert acc > 0.95


def test_invalid_params() -> None:
    with pytest.raises(ValueError, match="object_size"):
        LongRangeParams(img_size=(64, 64), object_size=40)
    with pytest.raises(ValueError, match="min_distance"):
        LongRangeParams(min_distance=0.9)


def test_set_epoch_draws_fresh_samples_deterministically() -> None:
    n = 6
    epoch2 = _ds(size=(64, 64), n=n)
    epoch2.set_epoch(2)
    long = _ds(size=(64, 64), n=3 * n)  # epoch 2 of an n-sample set = items 2n .. 3n-1 of the stream
    for i in range(n):
        x, y = epoch2[i]
        x_ref, y_ref = long[2 * n + i]
        assert torch.equal(x, x_ref) and y == y_ref
    fresh = _ds(size=(64, 64), n=n)
    assert all(not torch.equal(fresh[i][0], epoch2[i][0]) for i in range(n))
    epoch2.set_epoch(0)
    assert torch.equal(epoch2[3][0], fresh[3][0])
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        epoch2.set_epoch(-1)


def test_trainer_loader_workers_see_the_epoch(tmp_path) -> None:
    """The trainer's loader (one worker process) yields the images of the epoch set before iterating; a cached
    (fixed) training set and the validation set are left as they are."""
    from atlas_vision.data import set_dataset_epoch
    from atlas_vision.data.cache import CachedDataset
    from atlas_vision.train.distributed import DistContext
    from atlas_vision.train.factory import create_train_loader

    n = 8
    ds = _ds(size=(64, 64), n=n)
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), owns_group=False)
    loader, sampler = create_train_loader(ds, batch_size=n, num_workers=1, seed=0, ctx=ctx)
    seen = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        set_dataset_epoch(ds, epoch)
        images, _, _ = next(iter(loader))
        order = list(sampler)
        expected = _ds(size=(64, 64), n=2 * n)
        assert torch.equal(images, torch.stack([expected[epoch * n + i][0] for i in order]))
        seen.append(images)
    assert not torch.equal(seen[0], seen[1])
    cached = CachedDataset(_ds(size=(64, 64), n=2), tmp_path)
    set_dataset_epoch(cached, 3)  # no-op: a cache holds one fixed set
    assert torch.equal(cached[1][0], _ds(size=(64, 64), n=2)[1][0])
