"""3-D data: the procedural longrange3d task and NIfTI / .npy volume folders with a labels CSV."""

from __future__ import annotations

import math

import nibabel
import numpy as np
import pytest
import torch

from atlas_vision.data import build_datasets
from atlas_vision.data._rng import sample_rng
from atlas_vision.data.config import DataConfig
from atlas_vision.data.longrange3d import LEVELS, LongRange3DDataset, LongRange3DParams, make_scene_3d
from atlas_vision.data.volume import IntensityWindow, crop_or_pad, load_volume


# ------------------------------------------------------------------------------------------------ longrange3d
def test_longrange3d_is_deterministic_balanced_and_long_range():
    params = LongRange3DParams(volume_size=(64, 64, 64))
    ds = LongRange3DDataset(40, "train", seed=3, params=params)
    again = LongRange3DDataset(40, "train", seed=3, params=params)
    other = LongRange3DDataset(40, "val", seed=3, params=params)
    volume, label = ds[5]
    assert volume.shape == (1, 64, 64, 64) and volume.dtype == torch.float32
    torch.testing.assert_close(again[5][0], volume, rtol=0, atol=0)
    assert not torch.equal(other[5][0], volume)
    labels = [ds[i][1] for i in range(40)]
    assert sum(labels) == 20
    diagonal = math.sqrt(3) * 64
    for index in range(40):
        label = ds[index][1]
        rng = sample_rng("longrange3d", 3, "train", index, 0)
        scene = make_scene_3d(params, rng, label)
        a, b = scene.marked
        dist = np.linalg.norm(scene.zyx[a] - scene.zyx[b])
        assert dist >= 0.5 * diagonal
        # centres of one 32^3 window (atlas3d_tiny's window at patch 8) are at most 31 * sqrt(3) apart
        assert dist > 31 * math.sqrt(3)
        assert (scene.levels[a] == scene.levels[b]) == bool(label)
        assert len(scene.zyx) > 2  # clutter


def test_longrange3d_training_set_shows_new_volumes_every_epoch():
    """Told its epoch (the trainer does it, through ``set_dataset_epoch``), item ``i`` is stream sample
    ``epoch * n + i``: new volumes every epoch, the same ones for the same epoch, labels still balanced."""
    from atlas_vision.data import set_dataset_epoch

    params = LongRange3DParams(volume_size=(48, 48, 64))
    n = 6
    ds = LongRange3DDataset(n, "train", seed=1, params=params)
    long = LongRange3DDataset(3 * n, "train", seed=1, params=params)
    epoch0 = [ds[i][0] for i in range(n)]
    set_dataset_epoch(ds, 2)
    for i in range(n):
        torch.testing.assert_close(ds[i][0], long[2 * n + i][0], rtol=0, atol=0)
        assert not torch.equal(ds[i][0], epoch0[i])
    assert sum(ds[i][1] for i in range(n)) == n // 2
    with pytest.raises(IndexError, match="index 6 out of range for a data set of 6 samples"):
        ds[n]


def test_longrange3d_marked_levels_are_uniform_in_both_classes():
    params = LongRange3DParams(volume_size=(48, 64, 80))
    counts = np.zeros((2, len(LEVELS)))
    for index in range(400):
        label = index % 2
        scene = make_scene_3d(params, sample_rng("longrange3d", 0, "train", index, 0), label)
        counts[label, scene.levels[scene.marked[0]]] += 1
    freq = counts / counts.sum(axis=1, keepdims=True)
    assert np.abs(freq - 1 / len(LEVELS)).max() < 0.1


def test_longrange3d_rejects_volumes_that_cannot_hold_the_pair():
    with pytest.raises(ValueError, match=r"volume_size=\(32, 32, 32\).*cannot hold two objects"):
        LongRange3DParams(volume_size=(32, 32, 32))
    with pytest.raises(ValueError, match=r"every side in \[32, 512\].*\(16, 64, 64\)"):
        LongRange3DParams(volume_size=(16, 64, 64))


def test_build_datasets_longrange3d():
    cfg = DataConfig(task="longrange3d", volume_size=(48, 56, 64), train_samples=8, val_samples=4)
    data = build_datasets(cfg, seed=0)
    assert data.in_chans == 1 and data.num_classes == 2 and cfg.input_size == (48, 56, 64)
    assert data.train[0][0].shape == (1, 48, 56, 64) and len(data.val) == 4


def test_data_clutter_option_reaches_both_long_range_tasks():
    """``--data.clutter`` sets the distractor probability of longrange and longrange3d; None keeps each default."""
    vol = build_datasets(DataConfig(task="longrange3d", clutter=0.0, train_samples=4, val_samples=2), seed=0)
    assert vol.train.params.clutter == 0.0 and vol.val.params.clutter == 0.0
    img = build_datasets(DataConfig(task="longrange", img_size=(64, 64), clutter=0.1, train_samples=4), seed=0)
    assert img.train.params.clutter == 0.1
    default = build_datasets(DataConfig(task="longrange3d", train_samples=4, val_samples=2), seed=0)
    assert default.train.params.clutter == LongRange3DParams().clutter
    with pytest.raises(ValueError, match=r"clutter must be in \[0, 1\].*got 1.5"):
        DataConfig(task="longrange3d", clutter=1.5)


def test_longrange3d_count_target_labels_the_same_volumes_by_the_high_level_count():
    """``target="count"``: the same stream of volumes, labelled 0/1/2 = marked objects at the higher level; a
    count of 1 is exactly the "different" class."""
    params = LongRange3DParams(volume_size=(48, 48, 64))
    same = LongRange3DDataset(24, "train", seed=2, params=params)
    count = LongRange3DDataset(24, "train", seed=2, params=params, target="count")
    assert count.class_names == ["neither_high", "one_high", "both_high"]
    seen = set()
    for i in range(24):
        (v_same, label), (v_count, high) = same[i], count[i]
        torch.testing.assert_close(v_count, v_same, rtol=0, atol=0)
        assert high in (0, 1, 2) and (high == 1) == (label == 0)
        seen.add(high)
    assert seen == {0, 1, 2}
    data = build_datasets(DataConfig(task="longrange3d", target="count", train_samples=4, val_samples=2), seed=0)
    assert data.num_classes == 3 and data.val.target == "count"
    with pytest.raises(ValueError, match=r"target='count' exists for task='longrange3d' only \(task='longrange'\)"):
        DataConfig(task="longrange", target="count")
    with pytest.raises(ValueError, match=r"target must be one of 'label', 'count'; got 'sum'"):
        DataConfig(task="longrange3d", target="sum")


# ------------------------------------------------------------------------------------------------ volume folders
def _write_folder(tmp_path, n=4):
    rng = np.random.default_rng(0)
    rows = {"train": [], "val": []}
    for i in range(n):
        split = "train" if i < n - 1 else "val"
        label = ["lesion", "normal"][i % 2]
        volume_hu = rng.uniform(-1200, 1500, size=(10, 12, 14)).astype(np.float32)  # [D, H, W]
        if i % 2:
            path = tmp_path / "npy" / f"v{i}.npy"
            path.parent.mkdir(exist_ok=True)
            np.save(path, volume_hu)
        else:
            path = tmp_path / "nii" / f"v{i}.nii.gz"
            path.parent.mkdir(exist_ok=True)
            nibabel.save(nibabel.Nifti1Image(volume_hu.transpose(2, 1, 0), np.eye(4)), str(path))  # (x, y, z)
        rows[split].append(f"{path.relative_to(tmp_path)},{label}")
    rows["val"].append("npy/v1.npy,normal")
    for split, lines in rows.items():
        (tmp_path / f"{split}.csv").write_text("path,label\n" + "\n".join(lines) + "\n")
    return tmp_path


def test_nifti_and_npy_are_read_as_channel_depth_height_width(tmp_path):
    root = _write_folder(tmp_path)
    nii = load_volume(root / "nii" / "v0.nii.gz")
    npy = load_volume(root / "npy" / "v1.npy")
    assert nii.shape == npy.shape == (1, 10, 12, 14)


def test_volume_folder_dataset_windows_crops_and_labels(tmp_path):
    root = _write_folder(tmp_path)
    cfg = DataConfig(task="volume", root=str(root), volume_size=(8, 16, 14), intensity="ct-soft-tissue")
    data = build_datasets(cfg, seed=0)
    assert data.class_names == ["lesion", "normal"] and data.in_chans == 1 and len(data.train) == 3
    volume, label = data.val[0]
    assert volume.shape == (1, 8, 16, 14) and label == 1
    # centre crop of depth 10 -> 8 (start 1), zero pad of height 12 -> 16 (2 rows each side), width unchanged
    source = load_volume(root / data.val.paths[0].relative_to(root))
    windowed = IntensityWindow("ct-soft-tissue")(source)
    torch.testing.assert_close(volume[:, :, 2:14], torch.from_numpy(windowed[:, 1:9]), rtol=0, atol=0)
    assert float(volume[:, :, :2].abs().max()) == 0.0
    assert float(volume.max()) <= 1.0 and float(volume.min()) >= -1.0
    torch.manual_seed(0)
    train_volume, _ = data.train[0]
    assert train_volume.shape == (1, 8, 16, 14)


def test_intensity_windows():
    v = np.array([[[[-2000.0, -160.0, 40.0, 240.0, 3000.0]]]], dtype=np.float32)
    out = IntensityWindow("ct-soft-tissue")(v)  # level 40, width 400: [-160, 240] -> [-1, 1]
    np.testing.assert_allclose(out.ravel(), [-1.0, -1.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(IntensityWindow("-1000,1000")(v).ravel(), [-1.0, -0.16, 0.04, 0.24, 1.0], atol=1e-6)
    z = IntensityWindow("zscore")(v)
    assert abs(float(z.mean())) < 1e-5 and abs(float(z.std()) - 1) < 1e-5
    with pytest.raises(ValueError, match=r"intensity must be one of .*got 'ct-liver'"):
        IntensityWindow("ct-liver")
    with pytest.raises(ValueError, match="LOW < HIGH"):
        IntensityWindow("400,-1000")


def test_crop_or_pad_random_crop_stays_inside():
    v = np.arange(2 * 6 * 5 * 4, dtype=np.float32).reshape(2, 6, 5, 4)
    out = crop_or_pad(v, (4, 5, 6), np.random.default_rng(1))
    assert out.shape == (2, 4, 5, 6)
    assert set(np.unique(out[:, :, :, 1:5])) <= set(np.unique(v))


def test_volume_folder_errors_name_the_file(tmp_path):
    root = _write_folder(tmp_path)
    (root / "train.csv").write_text("path,label\nnpy/v1.npy,normal\nnpy/missing.npy,lesion\n")
    with pytest.raises(ValueError, match=r"names 1 file\(s\) that do not exist.*missing\.npy"):
        build_datasets(DataConfig(task="volume", root=str(root)), seed=0)
    (root / "bad.nii.gz").write_bytes(b"not a nifti at all")
    (root / "train.csv").write_text("path,label\nbad.nii.gz,normal\n")
    with pytest.raises(ValueError, match=r"cannot read volume .*bad\.nii\.gz"):
        build_datasets(DataConfig(task="volume", root=str(root)), seed=0)
    (root / "train.csv").write_text("file,class\nnpy/v1.npy,normal\n")
    with pytest.raises(ValueError, match="columns 'path' and 'label'"):
        build_datasets(DataConfig(task="volume", root=str(root)), seed=0)
    (root / "train.csv").write_text("path,label\nnpy/v1.npy,normal\n")
    (root / "val.csv").write_text("path,label\nnpy/v3.npy,lesion\n")
    with pytest.raises(ValueError, match=r"labels not in the training classes \['normal'\]: \['lesion'\]"):
        build_datasets(DataConfig(task="volume", root=str(root)), seed=0)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"task": "volume"}, "root must be set for task='volume'"),
        ({"task": "longrange3d", "volume_size": (64, 64)}, r"volume_size must be \(d, h, w\)"),
        ({"task": "longrange3d", "volume_size": (2, 64, 64)}, r"volume_size must be \(d, h, w\).*>= 4"),
        ({"task": "volume", "root": "x", "intensity": "bone"}, "intensity must be one of"),
        ({"task": "longrange3d", "cache_dir": "/tmp/x"}, "cache_dir is not supported"),
    ],
)
def test_volume_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DataConfig(**kwargs)
