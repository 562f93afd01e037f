"""Activation checkpointing of the conv stems, whose units hold BatchNorm layers.

At high resolution the stem keeps most of a training step's activations: its convolutions run at 1/2 to 1/8 of the
image side, where the MSA blocks run at 1/16. Measured on ``atlas_small`` at 1024 px, batch 2, fp32 on CPU
(``benchmarks/checkpointing_memory.py``, ``docs/benchmarks.md`` section 7): a training step's peak memory above the
model was 2376 MiB plain, 2093 MiB with the MSA blocks checkpointed and 842 MiB with the stem's units checkpointed
too, for 1.1-1.3x the time of a plain step (two runs).

Recomputing a unit in backward runs its BatchNorm layers in training mode a second time, which would update their
running statistics twice per step (an exponential average with about twice the momentum, so a checkpointed model
would evaluate differently from a plain one). :func:`checkpoint_conv_unit` restores the statistics after the
recomputation, so a checkpointed step leaves the model exactly as a plain step does.

Inside ``torch.compile`` on torch older than :data:`COMPILED_CHECKPOINT_MIN_TORCH` the stem's units are not
checkpointed: those releases replay a checkpointed region's buffer updates in the compiled backward (measured on
2.8.0: every BatchNorm's ``num_batches_tracked`` advanced by 2 per step and its running mean by about twice a plain
step's change; 2.9.1, 2.10.0, 2.11.0 and 2.14.1 update once). Correct statistics there cost the stem's memory saving.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from atlas_vision.requirements import release

#: The oldest torch whose compiled checkpoint updates a region's BatchNorm statistics once per step (module docstring).
COMPILED_CHECKPOINT_MIN_TORCH = (2, 9)

#: One checkpoint unit: modules applied one after the other.
Unit = tuple[nn.Module, ...]


@contextmanager
def _batchnorm_statistics_kept(unit: Unit) -> Iterator[None]:
    """Puts every BatchNorm running statistic of ``unit`` back as it was on entry, when the block exits."""
    norms = [
        m
        for module in unit
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    saved = [(m, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for norm, mean, var, count in saved:
                norm.running_mean.copy_(mean)
                norm.running_var.copy_(var)
                norm.num_batches_tracked.copy_(count)


def run_unit(unit: Unit, x: torch.Tensor) -> torch.Tensor:
    """``x`` through the modules of ``unit`` in order."""
    for module in unit:
        x = module(x)
    return x


def checkpoint_conv_unit(unit: Unit, x: torch.Tensor) -> torch.Tensor:
    """:func:`run_unit` with its activations recomputed in backward (non-reentrant ``torch.utils.checkpoint``).

    Only ``x`` is kept for backward. In eager mode the recomputation runs under :func:`_batchnorm_statistics_kept`,
    so BatchNorm statistics are updated once per step. Inside ``torch.compile`` the plain checkpoint is used: dynamo
    does not take a ``context_fn``, and the compiled graph applies the buffer updates once (its recomputation is of
    the functional graph; ``tests/test_stem_checkpointing.py`` checks both) -- from torch
    :data:`COMPILED_CHECKPOINT_MIN_TORCH` on; an older torch runs the unit plain there (module docstring).
    """
    if torch.compiler.is_compiling():
        if release(torch.__version__) < COMPILED_CHECKPOINT_MIN_TORCH:
            return run_unit(unit, x)
        return checkpoint(run_unit, unit, x, use_reentrant=False)
    return checkpoint(
        run_unit, unit, x, use_reentrant=False, context_fn=lambda: (nullcontext(), _batchnorm_statistics_kept(unit))
    )


def stem_units(conv0: nn.Module, stages: nn.Sequential) -> list[Unit]:
    """The checkpoint units of a conv stem, in order: ``conv0``; then per stage each residual block alone and the
    closing LayerNorm + strided conv together."""
    units: list[Unit] = [(conv0,)]
    for stage in stages:
        *blocks, norm, downsample = stage
        units += [(block,) for block in blocks]
        units.append((norm, downsample))
    return units


def run_stem_units(conv0: nn.Module, stages: nn.Sequential, x: torch.Tensor, checkpointed: bool) -> torch.Tensor:
    """``stages(conv0(x))``, unit by unit checkpointed when ``checkpointed`` and autograd is recording."""
    if not (checkpointed and torch.is_grad_enabled()):
        return stages(conv0(x))
    for unit in stem_units(conv0, stages):
        x = checkpoint_conv_unit(unit, x)
    return x
