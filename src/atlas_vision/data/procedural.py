"""Base classes of the procedurally generated data sets (longrange, pathfinder, longrange3d).

A procedural data set renders sample ``i`` from its own random stream (see ``_rng.py``), so it needs no files, is
identical in every worker process and in every run, and can be made at any length.  Subclasses implement
``render(index) -> (uint8 image HxWxC, label)``; this class turns that into a normalised float tensor.

**Fresh samples every epoch.**  A training set is told its epoch with :meth:`ProceduralDataset.set_epoch` (the
trainer calls :func:`set_dataset_epoch` next to the sampler's ``set_epoch``); item ``i`` of epoch ``e`` is then
stream index ``e * num_samples + i``, so no image is seen twice, and the images of every epoch are still a pure
function of ``(seed, split, epoch, i)`` (a resumed run sees exactly the images an uninterrupted run saw).  The
validation set is never told an epoch and stays fixed.  DataLoader workers receive a pickled copy of the data set
when an iterator is created, so the epoch must be set *before* iterating, with non-persistent workers (the trainer's
loader is built that way; ``tests/test_data_longrange.py`` checks it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from atlas_vision.data._rng import balanced_label, sample_rng, split_code

SceneT = TypeVar("SceneT")


def uint8_to_tensor(image_HWC: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """``uint8 [H, W, C]`` -> normalised ``float32 [C, H, W]``: ``(x / 255 - mean) / std`` per channel.

    Done in numpy (one fused pass per step, no intra-op threads), which is several times faster than the torch
    equivalent for small images inside DataLoader workers.
    """
    scale_C = (1.0 / (255.0 * np.asarray(std, dtype=np.float32))).astype(np.float32)
    shift_C = (-np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)).astype(np.float32)
    x_CHW = np.array(image_HWC.transpose(2, 0, 1), dtype=np.float32, order="C")  # [C, H, W], a fresh copy
    x_CHW *= scale_C[:, None, None]
    x_CHW += shift_C[:, None, None]
    return torch.from_numpy(x_CHW)


class EpochStreamDataset(Dataset):
    """A data set whose item ``i`` is sample ``epoch * num_samples + i`` of a deterministic per-split stream.

    Args:
        num_samples: length of the data set (per epoch).
        split: ``"train"``, ``"val"`` or ``"test"``; each split is an independent stream.
        seed: the data seed; the same seed gives the same samples.

    Subclasses render stream sample ``k`` from ``sample_rng(task, seed, split, k, attempt)`` (see
    :meth:`draw_scene`); this class holds the epoch bookkeeping shared by the 2-D images and the 3-D volumes.
    """

    #: Task name (key of ``_rng.TASK_CODES``).
    task: str = ""

    def __init__(self, num_samples: int, split: str, seed: int) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        split_code(split)  # validates the split name
        self.num_samples = int(num_samples)
        self.split = split
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """From now on item ``i`` is stream index ``epoch * num_samples + i`` (epoch 0 = the first ``num_samples``)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def stream_index(self, index: int) -> int:
        """The sample of this split that item ``index`` shows in the current epoch: ``epoch * num_samples + index``."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for a data set of {self.num_samples} samples")
        return self.epoch * self.num_samples + int(index)

    def draw_scene(
        self, index: int, draw: Callable[[np.random.Generator, int], SceneT | None], attempts: int, failure: str
    ) -> SceneT:
        """Draw the scene of binary-labelled stream sample ``index``: ``draw(rng, label)`` with a per-sample RNG,
        retried deterministically with new sub-seeds while it returns ``None``; ``RuntimeError(failure)`` after
        ``attempts``."""
        label = balanced_label(self.task, self.seed, self.split, index, num_classes=2)
        for attempt in range(attempts):
            scene = draw(sample_rng(self.task, self.seed, self.split, index, attempt), label)
            if scene is not None:
                return scene
        raise RuntimeError(failure)

    def __len__(self) -> int:
        return self.num_samples


class ProceduralDataset(EpochStreamDataset, ABC):
    """A 2-D image data set rendered on the fly, deterministically, from ``(seed, split, epoch, index)``.

    Items are ``(image [C, H, W] float32 normalised with (mean, std), label int)``.
    """

    #: Channels of the rendered images.
    in_chans: int = 3
    #: Per-channel normalisation (the images are rendered in [0, 1]; this maps them to [-1, 1]).
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)

    @property
    @abstractmethod
    def class_names(self) -> list[str]:
        """Names of the classes, indexed by label."""

    @property
    @abstractmethod
    def img_size(self) -> tuple[int, int]:
        """``(h, w)`` of the rendered images."""

    @abstractmethod
    def render(self, index: int) -> tuple[np.ndarray, int]:
        """Render sample ``index``: ``(uint8 image [H, W, C], label)``.  Pure function of the constructor arguments."""

    def cache_key(self) -> str:
        """A string that identifies every generation parameter (used to name cache files)."""
        return f"{self.task}-{self.img_size[0]}x{self.img_size[1]}-seed{self.seed}-{self.split}"

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image_HWC, label = self.render(self.stream_index(index))
        return uint8_to_tensor(image_HWC, self.mean, self.std), label


def set_dataset_epoch(dataset: Dataset, epoch: int) -> None:
    """Tell a training set its epoch if it draws fresh samples per epoch (an :class:`EpochStreamDataset`); other data
    sets (image folders, ``fake``, an on-disk cache of a fixed set of procedural samples) are left as they are."""
    if isinstance(dataset, EpochStreamDataset):
        dataset.set_epoch(epoch)
