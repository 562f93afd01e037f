"""Deterministic per-sample random streams for the procedural data sets.

Sample ``index`` of split ``split`` under ``seed`` must always be the same image, whichever worker process draws it
and in whatever order.  Every sample therefore gets its own random stream, keyed by a hash of
``(task, seed, split, index, attempt)``: a ``numpy.random.Generator`` on the counter-based Philox bit generator,
whose distinct keys give independent streams (and which is cheaper to create than a SeedSequence-seeded PCG64).
``attempt`` lets a generator that failed to place its objects try again with a different, still deterministic,
stream.  Labels come from a separate pure-Python hash (see ``balanced_label``).
"""

from __future__ import annotations

import numpy as np

# Split names -> a small integer mixed into the key.  Fixed forever: changing it changes every sample.
SPLIT_CODES: dict[str, int] = {"train": 0, "val": 1, "test": 2}

# Task names -> a small integer, so two tasks with the same seed never share a stream.
TASK_CODES: dict[str, int] = {"fake": 0, "longrange": 1, "pathfinder": 2, "longrange3d": 3}

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """One step of the splitmix64 finaliser: a bijective, well-mixing map of 64-bit integers."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix(*values: int) -> int:
    """Hash a tuple of non-negative integers to 64 bits (order-sensitive)."""
    h = 0x243F6A8885A308D3
    for v in values:
        h = _splitmix64(h ^ (int(v) & _MASK64))
    return h


def split_code(split: str) -> int:
    """Return the integer code of ``split`` (one of ``SPLIT_CODES``)."""
    if split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {sorted(SPLIT_CODES)}, got {split!r}")
    return SPLIT_CODES[split]


def sample_rng(task: str, seed: int, split: str, index: int, attempt: int = 0) -> np.random.Generator:
    """The random stream of one sample: a pure function of ``(task, seed, split, index, attempt)``."""
    if seed < 0 or index < 0 or attempt < 0:
        raise ValueError(f"seed, index and attempt must be >= 0, got seed={seed}, index={index}, attempt={attempt}")
    key = mix(TASK_CODES[task], seed, split_code(split), index, attempt)
    return np.random.Generator(np.random.Philox(key=key))


def balanced_label(task: str, seed: int, split: str, index: int, num_classes: int) -> int:
    """Label of sample ``index``, exactly balanced over every block of ``num_classes`` consecutive indices.

    Block ``b = index // num_classes`` holds each class exactly once, in a random order drawn from
    ``(seed, split, b)``.  So any prefix ``0..n-1`` of a split is balanced to within one sample per class, the label
    of a sample does not depend on the length of the split, and labels do not follow a visible pattern.
    """
    block, offset = divmod(int(index), num_classes)
    h = mix(TASK_CODES[task], seed, split_code(split), block, 0x6C616265)  # 0x6C616265 = "labe"
    order = list(range(num_classes))
    for i in range(num_classes - 1, 0, -1):  # Fisher-Yates driven by successive hashes
        h = _splitmix64(h)
        j = h % (i + 1)
        order[i], order[j] = order[j], order[i]
    return order[offset]
