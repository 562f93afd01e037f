"""Reading regions ahead of the model: a small thread pool keeps ``depth`` reads in flight, so in steady state the
model never waits on disk (the decoders of tifffile/imagecodecs, Pillow and OpenSlide release the GIL)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np

T = TypeVar("T")


class Prefetcher:
    """Iterate ``(item, pixels or the exception raised reading it)`` in input order; ``wait_s`` is the time the
    consumer spent waiting for reads."""

    def __init__(self, read: Callable[[T], np.ndarray], items: Iterable[T], threads: int = 2, depth: int = 4):
        if threads < 1 or depth < 1:
            raise ValueError(f"read threads and depth must be >= 1, got {threads}, {depth}")
        self._read, self._items, self._threads, self._depth = read, iter(items), threads, depth
        self.wait_s = 0.0

    def __iter__(self) -> Iterator[tuple[T, np.ndarray | Exception]]:
        pending: deque[tuple[T, Future]] = deque()
        with ThreadPoolExecutor(self._threads, thread_name_prefix="slide-read") as pool:
            try:
                for item in self._items:
                    pending.append((item, pool.submit(self._read, item)))
                    if len(pending) >= self._depth:
                        yield self._take(pending)
                while pending:
                    yield self._take(pending)
            finally:
                for _, future in pending:
                    future.cancel()

    def _take(self, pending: deque) -> tuple[T, np.ndarray | Exception]:
        item, future = pending.popleft()
        start = time.perf_counter()
        try:
            result: np.ndarray | Exception = future.result()
        except Exception as exc:  # noqa: BLE001 - reported to the consumer, which skips or stops (--strict)
            result = exc
        self.wait_s += time.perf_counter() - start
        return item, result
