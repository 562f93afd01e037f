"""Sample images and generation-speed measurements of the procedural tasks (``atlas-vision data samples|speed``)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from atlas_vision.data.build import make_procedural
from atlas_vision.data.config import DataConfig


def write_samples(cfg: DataConfig, out: str | Path, count: int, seed: int = 0, split: str = "val") -> list[Path]:
    """Render the first ``count`` samples of ``split`` to PNG files in ``out``; return their paths.

    File names: ``<task>[-<difficulty>]-<h>x<w>-<split><index>-<class name>.png``.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    ds = make_procedural(cfg, split, seed, count)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    h, w = cfg.img_size
    tag = f"{cfg.task}-{cfg.difficulty}" if cfg.task == "pathfinder" else cfg.task
    paths = []
    for i in range(count):
        image, label = ds.render(i)
        path = out / f"{tag}-{h}x{w}-{split}{i}-{ds.class_names[label]}.png"
        Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(path, optimize=True)
        paths.append(path)
    return paths


@dataclass
class SpeedReport:
    """Generation time per image, in milliseconds (median over rounds of the per-round mean)."""

    task: str
    img_size: tuple[int, int]
    count: int
    render_ms: float  # uint8 image (what a cache stores)
    getitem_ms: float  # normalised float tensor (what a DataLoader worker returns)

    def line(self) -> str:
        h, w = self.img_size
        return (
            f"{self.task} {h}x{w}: {self.render_ms:.2f} ms/image rendered, {self.getitem_ms:.2f} ms/image as a tensor "
            f"(median of 3 rounds of {self.count} images, one process)"
        )


def measure_speed(cfg: DataConfig, count: int = 100, seed: int = 0) -> SpeedReport:
    """Time ``render`` and ``__getitem__`` of the procedural task of ``cfg`` on ``count`` images, 3 rounds each."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    ds = make_procedural(cfg, "train", seed, count)
    ds.render(0)  # warm-up: lookup tables, caches

    def per_image(fn: object) -> float:
        rounds = []
        for _ in range(3):
            start = time.perf_counter()
            for i in range(count):
                fn(i)  # type: ignore[operator]
            rounds.append((time.perf_counter() - start) / count * 1e3)
        return float(statistics.median(rounds))

    return SpeedReport(cfg.task, cfg.img_size, count, per_image(ds.render), per_image(ds.__getitem__))
