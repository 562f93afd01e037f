"""Region mode: read the planned regions (prefetched), run them through the backbone in batches, write each
region's owned feature cells, then mark it done."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from atlas_vision.slide.errors import RegionReadError, SlideError
from atlas_vision.slide.model import SlideModel, forward_batch
from atlas_vision.slide.prefetch import Prefetcher
from atlas_vision.slide.progress import ProgressLog
from atlas_vision.slide.regions import Region, RegionGrid
from atlas_vision.slide.resolution import SlideView
from atlas_vision.slide.store import FeatureStore


@dataclass
class EmbedTimings:
    regions: int = 0
    failed: int = 0
    read_wait_s: float = 0.0
    compute_s: float = 0.0
    write_s: float = 0.0
    total_s: float = 0.0
    failures: dict[int, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items() if k != "failures"}


def embed_regions(
    view: SlideView,
    grid: RegionGrid,
    todo: list[int],
    sm: SlideModel,
    store: FeatureStore,
    progress: ProgressLog,
    *,
    batch_size: int = 1,
    read_threads: int = 2,
    strict: bool = False,
) -> EmbedTimings:
    """Process regions ``todo`` (indices into ``grid``); returns timings and the regions that failed to read.

    A region that cannot be read (corrupt or truncated tile) is logged and skipped, or stops the run with
    ``strict``. A region is marked done in ``progress`` only after all its arrays are written.
    """
    if batch_size < 1:
        raise SlideError(f"--batch-size must be >= 1, got {batch_size}")
    timings = EmbedTimings()
    start = time.perf_counter()

    def read(region: Region) -> np.ndarray:
        return view.read(region.x, region.y, region.size, region.size)

    prefetch = Prefetcher(read, (grid.region(i) for i in todo), threads=read_threads, depth=max(2, 2 * batch_size))
    batch: list[tuple[Region, np.ndarray]] = []

    def flush() -> None:
        if not batch:
            return
        t0 = time.perf_counter()
        maps, embeddings, probs = forward_batch(sm, np.stack([pixels for _, pixels in batch]))
        t1 = time.perf_counter()
        for b, (region, _) in enumerate(batch):
            store.write_region(region, [m[b] for m in maps], embeddings[b], None if probs is None else probs[b])
            progress.mark_done(region.index)
        timings.compute_s += t1 - t0
        timings.write_s += time.perf_counter() - t1
        timings.regions += len(batch)
        batch.clear()

    for region, pixels in prefetch:
        if isinstance(pixels, Exception):
            if strict or not isinstance(pixels, RegionReadError):
                raise pixels
            message = str(pixels)
            print(
                f"atlas-vision slide: skipped region {region.index} (row {region.row}, col {region.col}): {message}",
                file=sys.stderr,
            )
            progress.mark_failed(region.index, message)
            timings.failures[region.index] = message
            timings.failed += 1
            continue
        batch.append((region, pixels))
        if len(batch) == batch_size:
            flush()
    flush()
    timings.read_wait_s = prefetch.wait_s
    timings.total_s = time.perf_counter() - start
    return timings
