"""Timing and peak-memory measurement for the benchmarks.

Timing: ``warmup`` untimed calls, then ``iters`` timed calls; each call is bracketed by a device synchronisation on
CUDA (``torch.cuda.synchronize``), so asynchronous kernel launches are not mistaken for work done. The statistic is
the median (robust to the odd slow call on a shared machine), with min and inter-quartile range alongside.

Peak memory:

* **CUDA**: ``torch.cuda.max_memory_allocated`` after ``torch.cuda.reset_peak_memory_stats``, minus the memory
  allocated before the call: the extra tensor memory the measured call needed at its peak (activations, gradients,
  workspaces), not counting the caching allocator's reserve.
* **CPU**: the process's peak resident set size (Linux ``VmHWM`` in ``/proc/self/status``). Before the call, freed
  heap memory is handed back to the OS (glibc ``malloc_trim(0)``; otherwise the allocator keeps the pages of the
  warm-up calls resident and the call would appear to need nothing) and the peak is reset to the current RSS by
  writing ``5`` to ``/proc/self/clear_refs``; the result is that peak minus the RSS just before the call. Where the
  reset is not possible (non-Linux, restricted ``/proc``), the fallback is the growth of
  ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which only shows memory above the process's earlier peak (so it can
  under-report; ``peak_mem_method`` in the results says which method was used). RSS counts whole pages the allocator
  holds, so numbers below a few MiB are noise.
"""

from __future__ import annotations

import ctypes
import re
import resource
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    """Wall-clock statistics of ``iters`` timed calls, in milliseconds."""

    median_ms: float
    min_ms: float
    iqr_ms: float
    iters: int


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], object], device: torch.device, warmup: int = 2, iters: int = 5) -> Timing:
    """Median wall time of ``fn()`` after ``warmup`` calls.

    Raises:
        ValueError: if ``warmup < 0`` or ``iters < 1``.
    """
    if warmup < 0 or iters < 1:
        raise ValueError(f"need warmup >= 0 and iters >= 1, got warmup={warmup}, iters={iters}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        synchronize(device)
        samples.append((time.perf_counter() - start) * 1e3)
    if len(samples) >= 4:
        q = statistics.quantiles(samples, n=4)
        iqr = q[2] - q[0]
    else:
        iqr = max(samples) - min(samples)
    return Timing(median_ms=statistics.median(samples), min_ms=min(samples), iqr_ms=iqr, iters=iters)


def _proc_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            match = re.search(rf"^{field}:\s+(\d+)\s+kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _release_free_heap() -> None:
    """Return freed heap pages to the OS (glibc ``malloc_trim(0)``), so the RSS baseline does not already hold the
    memory of earlier calls; a no-op where glibc is not the allocator."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _proc_status_kb("VmHWM") is not None


def _ru_maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, KiB on Linux


@dataclass(frozen=True)
class PeakMemory:
    """Extra memory the measured call needed at its peak, in MiB, and how it was measured."""

    peak_mb: float
    method: str  # "cuda_max_allocated", "vmhwm_reset" or "ru_maxrss_delta"


def measure_peak_memory(fn: Callable[[], object], device: torch.device) -> PeakMemory:
    """Run ``fn()`` once and report its peak extra memory (see the module docstring for the method per device)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return PeakMemory((torch.cuda.max_memory_allocated(device) - base) / 2**20, "cuda_max_allocated")
    _release_free_heap()
    if _reset_peak_rss():
        base_kb = _proc_status_kb("VmRSS") or 0
        fn()
        peak_kb = _proc_status_kb("VmHWM") or base_kb
        return PeakMemory(max(peak_kb - base_kb, 0) / 1024, "vmhwm_reset")
    base = _ru_maxrss_bytes()
    fn()
    return PeakMemory(max(_ru_maxrss_bytes() - base, 0) / 2**20, "ru_maxrss_delta")


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is an allocation failure (CUDA OOM, or a CPU allocator failure surfaced as RuntimeError)."""
    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)
