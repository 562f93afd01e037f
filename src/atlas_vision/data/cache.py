"""Optional on-disk cache of a procedural data set (``DataConfig.cache_dir``).

The first use renders every sample once into ``<cache_dir>/<key>.images.npy`` (``uint8 [N, H, W, C]``) and
``<key>.labels.npy``; later uses memory-map them.  ``<key>`` encodes every generation parameter (task, size, seed,
split, length, task parameters and a format version), so a changed parameter never reads stale data.  Files are
written under temporary names and renamed, so an interrupted build leaves no half-written cache; the images file
is renamed last and marks a complete cache.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from atlas_vision.data.procedural import ProceduralDataset, uint8_to_tensor

log = logging.getLogger(__name__)


class CachedDataset(Dataset):
    """A procedural data set read back from its cache files; same items as the wrapped data set."""

    def __init__(self, source: ProceduralDataset, cache_dir: str | os.PathLike[str]) -> None:
        self.source = source
        stem = Path(cache_dir) / f"{source.cache_key()}-n{len(source)}"
        self.images_path = stem.with_name(stem.name + ".images.npy")
        self.labels_path = stem.with_name(stem.name + ".labels.npy")
        if not self.images_path.exists():
            _build(source, self.images_path, self.labels_path)
        self.labels = np.load(self.labels_path)
        self._images: np.ndarray | None = None  # opened lazily, once per (worker) process

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self._images is None:
            self._images = np.load(self.images_path, mmap_mode="r")
        return uint8_to_tensor(self._images[index], self.source.mean, self.source.std), int(self.labels[index])

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_images"] = None  # never pickle the memory map into workers
        return state


def _build(source: ProceduralDataset, images_path: Path, labels_path: Path) -> None:
    n = len(source)
    h, w = source.img_size
    shape = (n, h, w, source.in_chans)
    need = int(np.prod(shape))
    images_path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(images_path.parent).free
    if need > free:
        raise OSError(
            f"cache for {source.cache_key()} needs {need / 2**30:.2f} GiB in {images_path.parent}, "
            f"only {free / 2**30:.2f} GiB free; set cache_dir to None to generate on the fly"
        )
    log.info("building data cache %s (%d samples, %.2f GiB)", images_path, n, need / 2**30)
    tmp_images = images_path.with_name(f"{images_path.name}.tmp{os.getpid()}")
    tmp_labels = labels_path.with_name(f"{labels_path.name}.tmp{os.getpid()}")
    start = time.perf_counter()
    try:
        images = np.lib.format.open_memmap(tmp_images, mode="w+", dtype=np.uint8, shape=shape)
        labels = np.empty(n, dtype=np.int64)
        for i in range(n):
            images[i], labels[i] = source.render(i)
        images.flush()
        del images
        with open(tmp_labels, "wb") as f:
            np.save(f, labels)
        os.replace(tmp_labels, labels_path)
        os.replace(tmp_images, images_path)
    finally:
        for tmp in (tmp_images, tmp_labels):
            tmp.unlink(missing_ok=True)
    log.info("built %s in %.1f s", images_path, time.perf_counter() - start)
