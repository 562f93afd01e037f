"""Volume folders: NIfTI (``.nii``, ``.nii.gz``, via nibabel) and ``.npy`` files listed in a labels CSV.

Layout of a data root::

    root/train.csv   # header "path,label"; one row per volume; path relative to root
    root/val.csv
    root/<any sub-folders>/<volumes>

Labels are class names (sorted to indices, the order of ``class_names``) or integers. A ``.npy`` file holds
``[D, H, W]`` or ``[C, D, H, W]``; a NIfTI file holds ``(x, y, z[, c])`` in voxel order, read as ``[C, D=z, H=y,
W=x]`` (no resampling: voxels are used as stored). Every volume is intensity-windowed (:class:`IntensityWindow`,
e.g. a CT Hounsfield window), then cropped / zero-padded to ``volume_size``: a random crop and random flips on every
axis for training, a centre crop for evaluation.

Errors name the file: a CSV row whose file does not exist (all missing files are counted and the first ten listed
when the data set is built), a file that cannot be read or has the wrong number of dimensions.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

VOLUME_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz", ".npy")

# Named CT windows (level L, width W) -> clip to [L - W/2, L + W/2] Hounsfield units, then scale to [0, 1]
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "ct-soft-tissue": (40.0, 400.0),
    "ct-lung": (-600.0, 1500.0),
    "ct-bone": (400.0, 1800.0),
    "ct-brain": (40.0, 80.0),
    "ct-abdomen": (60.0, 400.0),
}
INTENSITY_MODES: tuple[str, ...] = ("none", "zscore", "minmax", *CT_WINDOWS)


@dataclass(frozen=True)
class IntensityWindow:
    """Intensity normalisation of one volume.

    ``mode``:

    * a CT window name (``"ct-soft-tissue"``, ``"ct-lung"``, ``"ct-bone"``, ``"ct-brain"``, ``"ct-abdomen"``) or
      ``"LOW,HIGH"`` (e.g. ``"-1000,400"``): clip to ``[low, high]`` and map to ``[-1, 1]``;
    * ``"zscore"``: per-volume ``(v - mean) / std`` (MRI);
    * ``"minmax"``: per-volume map of ``[min, max]`` to ``[-1, 1]``;
    * ``"none"``: unchanged.
    """

    mode: str = "none"

    def __post_init__(self) -> None:
        self.bounds()  # validates

    def bounds(self) -> tuple[float, float] | None:
        """The fixed clip range of a window mode, ``None`` for the data-dependent modes."""
        if self.mode in CT_WINDOWS:
            level, width = CT_WINDOWS[self.mode]
            return level - width / 2, level + width / 2
        if self.mode in ("none", "zscore", "minmax"):
            return None
        parts = self.mode.split(",")
        try:
            low, high = (float(p) for p in parts)
        except ValueError:
            raise ValueError(
                f"intensity must be one of {INTENSITY_MODES} or 'LOW,HIGH' (e.g. '-1000,400'), got {self.mode!r}"
            ) from None
        if not low < high:
            raise ValueError(f"intensity window 'LOW,HIGH' needs LOW < HIGH, got {self.mode!r}")
        return low, high

    def __call__(self, volume: np.ndarray) -> np.ndarray:
        """float32 ``[C, D, H, W]`` -> normalised float32 of the same shape."""
        v = volume.astype(np.float32, copy=True)
        bounds = self.bounds()
        if bounds is not None:
            low, high = bounds
            np.clip(v, low, high, out=v)
            return (v - low) * (2.0 / (high - low)) - 1.0
        if self.mode == "zscore":
            return (v - v.mean()) / max(float(v.std()), 1e-6)
        if self.mode == "minmax":
            lo, hi = float(v.min()), float(v.max())
            return (v - lo) * (2.0 / max(hi - lo, 1e-6)) - 1.0
        return v


def is_volume_file(path: Path) -> bool:
    return any(path.name.endswith(s) for s in VOLUME_SUFFIXES)


def load_volume(path: Path) -> np.ndarray:
    """Read one volume as float32 ``[C, D, H, W]``; ValueError naming the file if it cannot be read."""
    import zlib

    from nibabel.filebasedimages import ImageFileError

    name = path.name
    if not is_volume_file(path):
        raise ValueError(f"unsupported volume file {path} (suffixes: {', '.join(VOLUME_SUFFIXES)})")
    try:
        data = _read_array(path)
    except (OSError, EOFError, ValueError, zlib.error, ImageFileError) as err:  # corrupt / truncated / not a volume
        raise ValueError(f"cannot read volume {path}: {type(err).__name__}: {err}") from None
    if data.ndim != 4:
        raise ValueError(
            f"volume {name} has shape {tuple(data.shape)}; expected [D, H, W] or [C, D, H, W] (.npy) or "
            f"(x, y, z[, c]) (NIfTI)"
        )
    return np.asarray(data, dtype=np.float32)


def _read_array(path: Path) -> np.ndarray:
    """``.npy`` -> ``[C, D, H, W]`` (channel added to 3-D arrays); NIfTI ``(x, y, z[, c])`` -> ``[c, z, y, x]``."""
    if path.name.endswith(".npy"):
        data = np.load(path, mmap_mode="r", allow_pickle=False)
        return data[None] if data.ndim == 3 else data
    import nibabel

    data = np.asarray(nibabel.load(str(path)).dataobj, dtype=np.float32)
    if data.ndim == 3:
        data = data[..., None]
    return data.transpose(3, 2, 1, 0) if data.ndim == 4 else data


def read_labels_csv(csv_path: Path, root: Path) -> tuple[list[Path], list[str]]:
    """Rows ``(path, label)`` of a labels CSV; ValueError naming the missing files or bad rows."""
    if not csv_path.is_file():
        raise FileNotFoundError(f"labels CSV {csv_path} does not exist (expected a 'path,label' file)")
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"path", "label"} <= set(reader.fieldnames):
            raise ValueError(f"{csv_path} must have a header with columns 'path' and 'label', got {reader.fieldnames}")
        rows = [(row["path"], row["label"]) for row in reader]
    if not rows:
        raise ValueError(f"{csv_path} lists no volumes")
    paths = [root / p for p, _ in rows]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ValueError(
            f"{csv_path} names {len(missing)} file(s) that do not exist under {root}: {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''}"
        )
    bad = [str(p) for p in paths if not is_volume_file(p)]
    if bad:
        raise ValueError(f"{csv_path} names file(s) that are not volumes ({', '.join(VOLUME_SUFFIXES)}): {bad[:10]}")
    return paths, [label.strip() for _, label in rows]


def crop_or_pad(volume: np.ndarray, size: tuple[int, int, int], rng: np.random.Generator | None) -> np.ndarray:
    """``[C, D, H, W]`` -> ``[C, *size]``: random (``rng``) or centred crop where larger, zero-pad where smaller."""
    out = np.zeros((volume.shape[0], *size), dtype=np.float32)
    src, dst = [slice(None)], [slice(None)]
    for have, want in zip(volume.shape[1:], size):
        if have >= want:
            start = int(rng.integers(0, have - want + 1)) if rng is not None else (have - want) // 2
            src.append(slice(start, start + want))
            dst.append(slice(0, want))
        else:
            start = (want - have) // 2
            src.append(slice(0, have))
            dst.append(slice(start, start + have))
    out[tuple(dst)] = volume[tuple(src)]
    return out


class VolumeFolderDataset(Dataset):
    """Volumes listed in ``csv_path``: items ``(float32 [C, *volume_size], label int)``.

    Args:
        root: data root (CSV paths are relative to it).
        csv_path: the split's labels CSV.
        class_names: label names in index order (shared by the splits); ``None`` = sorted labels of this CSV.
        volume_size: ``(d, h, w)`` voxels the model sees.
        intensity: :class:`IntensityWindow` mode.
        train: random crop + random flips (probability ``flip`` per axis) if True, centre crop otherwise.
        flip: flip probability per axis (training only). The crop and flips draw from torch's random stream
            (seeded per DataLoader worker by torch), so they follow the run's seed.
    """

    def __init__(
        self,
        root: Path,
        csv_path: Path,
        class_names: list[str] | None,
        volume_size: tuple[int, int, int],
        intensity: str = "none",
        train: bool = False,
        flip: float = 0.5,
    ) -> None:
        self.root = Path(root)
        self.paths, labels = read_labels_csv(Path(csv_path), self.root)
        self.class_names = class_names if class_names is not None else sorted(set(labels), key=_label_key)
        index = {name: i for i, name in enumerate(self.class_names)}
        unknown = sorted(set(labels) - set(index))
        if unknown:
            raise ValueError(f"{csv_path} has labels not in the training classes {self.class_names}: {unknown[:10]}")
        self.labels = [index[label] for label in labels]
        self.volume_size = tuple(volume_size)
        self.window = IntensityWindow(intensity)
        self.train, self.flip = train, flip
        self.in_chans = load_volume(self.paths[0]).shape[0]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        volume = load_volume(self.paths[index])
        if volume.shape[0] != self.in_chans:
            raise ValueError(
                f"volume {self.paths[index]} has {volume.shape[0]} channel(s); the first volume of the split has "
                f"{self.in_chans}"
            )
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ()).item())) if self.train else None
        volume = crop_or_pad(self.window(volume), self.volume_size, rng)
        if rng is not None:
            axes = [1 + a for a in range(3) if rng.random() < self.flip]
            if axes:
                volume = np.ascontiguousarray(np.flip(volume, axis=axes))
        return torch.from_numpy(volume), self.labels[index]


def _label_key(label: str) -> tuple[int, int | str]:
    """Sort integer labels numerically, names alphabetically."""
    return (0, int(label)) if label.lstrip("-").isdigit() else (1, label)
