"""The prefetching reader: reads run ahead of the consumer (so compute does not wait on disk), results come back in
order, and a failed read is handed over as its exception."""

from __future__ import annotations

import threading
import time

import numpy as np

from atlas_vision.slide.prefetch import Prefetcher


def test_reads_run_ahead_in_order_and_errors_are_passed_on() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def read(i: int) -> np.ndarray:
        with lock:
            started.append(i)
        if i == 5:
            raise OSError("bad tile")
        return np.full(2, i)

    prefetch = Prefetcher(read, range(8), threads=2, depth=4)
    seen = []
    for i, (item, result) in enumerate(prefetch):
        if i == 0:  # while the consumer holds item 0, the next reads are already in flight or done
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and len(started) < 4:
                time.sleep(0.005)
            assert len(started) >= 4
        seen.append(item)
        if item == 5:
            assert isinstance(result, OSError)
        else:
            assert int(result[0]) == item
    assert seen == list(range(8)) and sorted(started) == list(range(8))
    assert prefetch.wait_s >= 0
