"""Benchmarks: token mixers (`bench mixers`), MSA ablations (`bench ablations`) and whole backbones (`bench models`).

Every result is a CSV row stamped with its environment (:mod:`atlas_vision.bench.report`), plus PNG plots; timings
use :mod:`atlas_vision.bench.timing` (warm-up, median, CUDA synchronisation, peak memory per device).
"""

from atlas_vision.bench.report import ENV_COLUMNS, env_metadata, read_csv, write_csv
from atlas_vision.bench.timing import PeakMemory, Timing, measure_peak_memory, time_fn

__all__ = [
    "ENV_COLUMNS",
    "PeakMemory",
    "Timing",
    "env_metadata",
    "measure_peak_memory",
    "read_csv",
    "time_fn",
    "write_csv",
]
