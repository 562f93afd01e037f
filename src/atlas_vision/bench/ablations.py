"""``atlas-vision bench ablations``: the paper's MSA ablations as variants of the mixer benchmark network.

* ``communication`` (Table 4): single_scale (window attention), none (scales side by side), bottom_up, top_down,
  full MSA -- stack composition, the readout averaging the tokens of all scales;
* ``composition`` (Table 5): stack vs conv_downsample vs atlas (scale dropping), full communication;
* ``window``: window side K (``--windows``);
* ``pool_stride``: pooling stride S (``--strides``);
* ``pool_op``: summarize by max vs avg.

Everything not varied is the base MSA network (``--composition`` / ``--communication`` of the base default to
stack / full). Output: ``ablations.csv`` (an ``ablation`` and a ``variant`` column, then the mixer columns) and
plots, like ``bench mixers``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from atlas_vision.bench.accuracy import TrainBudget
from atlas_vision.bench.common import BenchSettings
from atlas_vision.bench.mixers import MEASURE_COLUMNS, MixerShape, Variant, run_variants, write_outputs
from atlas_vision.bench.report import ENV_COLUMNS
from atlas_vision.layers import Communication
from atlas_vision.mixers import Composition, MixerKind
from atlas_vision.ops import PoolOp, Size2D

ABLATIONS: tuple[str, ...] = ("communication", "composition", "window", "pool_stride", "pool_op")
ABLATION_COLUMNS: tuple[str, ...] = ("ablation", "variant", "mixer", *MEASURE_COLUMNS, *ENV_COLUMNS)

# Table 4's order (weakest to full MSA)
COMMUNICATION_ORDER: tuple[Communication, ...] = (
    Communication.SINGLE_SCALE,
    Communication.NONE,
    Communication.BOTTOM_UP,
    Communication.TOP_DOWN,
    Communication.FULL,
)


def ablation_variants(
    ablations: tuple[str, ...],
    shape: MixerShape,
    windows: tuple[int, ...],
    strides: tuple[int, ...],
    base: dict[str, Any],
) -> list[Variant]:
    """The variants of the chosen ablations; ``base`` holds MSA options shared by all (composition, ...).

    Raises:
        ValueError: unknown ablation, or a window/stride combination MSA cannot use (with the reason).
    """
    unknown = [a for a in ablations if a not in ABLATIONS]
    if unknown:
        raise ValueError(f"unknown ablation(s) {unknown}; choose from {', '.join(ABLATIONS)}")
    msa = MixerKind.MSA
    variants: list[Variant] = []

    def add(ablation: str, value: str, **overrides: Any) -> None:
        kwargs = shape.net_kwargs(msa, **{**base, **overrides})
        variants.append(
            Variant(f"{ablation}={value}", {"ablation": ablation, "variant": value, "mixer": msa.value}, kwargs)
        )

    for ablation in ablations:
        if ablation == "communication":
            for mode in COMMUNICATION_ORDER:
                add(ablation, mode.value, communication=mode.value)
        elif ablation == "composition":
            for comp in Composition:
                add(ablation, comp.value, composition=comp.value)
        elif ablation == "window":
            for k in windows:
                add(ablation, str(k), window=(k, k))
        elif ablation == "pool_stride":
            for s in strides:
                add(ablation, str(s), pool_stride=(s, s))
        elif ablation == "pool_op":
            for op in PoolOp:
                add(ablation, op.value, pool_op=op.value)
    return variants


def run_ablations(
    ablations: tuple[str, ...],
    grids: tuple[Size2D, ...],
    shape: MixerShape,
    windows: tuple[int, ...],
    strides: tuple[int, ...],
    base: dict[str, Any],
    batch: int,
    settings: BenchSettings,
    budget: TrainBudget | None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """The whole ``bench ablations`` command: rows, ``ablations.csv`` and plots in ``settings.out``."""
    variants = ablation_variants(ablations, shape, windows, strides, base)
    rows = run_variants(variants, grids, batch, settings, budget, log)
    write_outputs(
        rows, settings, "ablations", ABLATION_COLUMNS, lambda r: f"{r['ablation']}={r['variant']}", "MSA ablations"
    )
    return rows
