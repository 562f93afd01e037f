"""Tell glibc's ``malloc`` to keep freed memory in the process, so a CPU training loop reuses its large buffers.

PyTorch's CPU allocator is plain ``malloc``/``free``. glibc serves every block above its mmap threshold (at most
32 MiB) with a fresh ``mmap`` and returns it with ``munmap`` when freed, so each large activation of every step is
page-faulted in and zeroed by the kernel again: Atlas-B's stem at 1024 px makes 50-67 MiB maps, and one training
step took 0.66-1.02 M minor page faults and 2.5-4.0 s of system time out of 10.6-12.3 s (steps 1-3 of
``benchmarks/alloc_faults.py``, 2-core Xeon, 2026-12-03, ``docs/benchmarks.md`` section 8). With ``M_MMAP_MAX = 0``
(no mmap: every block comes from the heap) and a large ``M_TRIM_THRESHOLD`` (the heap is not shrunk on every free)
freed blocks are reused: the same steps took <= 16 k faults, 0.02-0.17 s of system time and 8.95-9.14 s. Peak RSS
grows a little (3.9 -> 4.2 GiB there), since freed memory stays with the process. This is the zero-install equivalent of running under jemalloc/tcmalloc, as PyTorch's CPU tuning
guide suggests; the same settings as environment variables are
``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...``.

The setting is process-wide and stays for the life of the process (forked data workers inherit it). Only glibc has
``mallopt``; elsewhere (musl, macOS, Windows) nothing changes and the reason is returned.
"""

from __future__ import annotations

import ctypes
import platform
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
KEEP_TRIM_THRESHOLD = 2**31 - 1
"""Bytes of free memory at the top of the heap before glibc gives it back (``mallopt`` takes a C ``int``)."""


def keep_freed_memory() -> str | None:
    """Apply the setting above; ``None`` when applied, else why it could not be (no glibc, ``mallopt`` refused)."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return f"not glibc (platform {sys.platform}, libc {platform.libc_ver()[0] or 'unknown'})"
    try:
        libc = ctypes.CDLL(None)  # the C library this process already uses
        mallopt = libc.mallopt
    except (OSError, AttributeError) as err:
        return f"mallopt not found ({err})"
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    for option, value, name in (
        (M_MMAP_MAX, 0, "M_MMAP_MAX"),
        (M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD, "M_TRIM_THRESHOLD"),
    ):
        if mallopt(option, value) != 1:
            return f"mallopt({name}, {value}) was refused"
    return None
