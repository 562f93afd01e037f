"""The ``fake`` task: random images with random labels, for smoke tests of the training and evaluation code."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from atlas_vision.data._rng import balanced_label, sample_rng


class FakeDataset(Dataset):
    """Deterministic standard-normal images ``[C, H, W]`` with labels balanced over ``num_classes``.

    Nothing can be learned from it beyond the label prior; it only exercises the pipeline.

    Args:
        num_samples: length of the data set.
        split: ``"train"``, ``"val"`` or ``"test"``.
        seed: data seed (sample ``i`` is a pure function of ``(seed, split, i)``).
        img_size: ``(h, w)``.
        num_classes: number of classes.
        in_chans: image channels.
    """

    def __init__(
        self, num_samples: int, split: str, seed: int, img_size: tuple[int, int], num_classes: int, in_chans: int = 3
    ) -> None:
        if num_samples < 1 or num_classes < 2 or in_chans < 1:
            raise ValueError(
                f"need num_samples >= 1, num_classes >= 2, in_chans >= 1; got {num_samples}, {num_classes}, {in_chans}"
            )
        self.num_samples, self.split, self.seed = int(num_samples), split, int(seed)
        self.img_size, self.num_classes, self.in_chans = (int(img_size[0]), int(img_size[1])), num_classes, in_chans
        self.class_names = [f"class_{i}" for i in range(num_classes)]

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for a data set of {self.num_samples} samples")
        rng = sample_rng("fake", self.seed, self.split, int(index))
        image = rng.standard_normal((self.in_chans, *self.img_size), dtype=np.float32)
        return torch.from_numpy(image), balanced_label("fake", self.seed, self.split, int(index), self.num_classes)
