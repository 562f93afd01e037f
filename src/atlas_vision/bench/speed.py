"""Speed and memory of the two benchmark workloads.

* :func:`measure_block_stack`: forward and forward+backward of a :class:`~atlas_vision.mixers.MixerNet`'s block stack
  (``forward_body``: the mixer blocks only, no stem or head) on a random ``[B, h, w, C]`` token map -- the mixer
  comparison at a given token count.
* :func:`measure_train_step`: one full training step (forward, cross-entropy, backward, AdamW step) of a whole model
  on random images, with an out-of-memory back-off that halves the batch until the step fits.

Mixed precision (``bf16``/``fp16``) runs under ``torch.autocast`` with fp32 parameters, as training does.
"""

from __future__ import annotations

import contextlib
import functools
import gc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from atlas_vision.bench.timing import is_out_of_memory, measure_peak_memory, time_fn
from atlas_vision.mixers import MixerNet, MixerNetConfig
from atlas_vision.ops import Size2D

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``bf16``/``fp16``; a no-op for ``fp32``."""
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype])


def _free(device: torch.device) -> None:
    """Hand cached CUDA blocks back after a model is dropped (after an OOM, reference cycles may hold tensors, hence
    the garbage collection; it costs ~0.5 s with torch loaded, so it is skipped on CPU)."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class StackResult:
    """One block-stack measurement; times in ms, memory in MiB; ``status`` is ``ok``, ``oom`` or ``error: ...``."""

    fwd_ms: float | None
    fwd_bwd_ms: float | None
    peak_mem_mb: float | None
    peak_mem_method: str
    params: int
    status: str

    def row(self) -> dict[str, Any]:
        return {
            "fwd_ms": self.fwd_ms,
            "fwd_bwd_ms": self.fwd_bwd_ms,
            "peak_mem_mb": self.peak_mem_mb,
            "peak_mem_method": self.peak_mem_method,
            "params": self.params,
            "status": self.status,
        }


def measure_block_stack(
    config: MixerNetConfig,
    grid: Size2D,
    batch: int,
    device: torch.device,
    dtype: str,
    warmup: int,
    iters: int,
    seed: int = 0,
) -> StackResult:
    """Time ``MixerNet(config).forward_body`` on a random ``[batch, h, w, dim]`` map.

    Returns ``status="oom"`` (and no numbers) when the device runs out of memory; other errors propagate.
    """
    torch.manual_seed(seed)
    net = MixerNet(config).to(device).train()
    body = net.body
    params = sum(p.numel() for p in body.parameters())
    x = torch.randn(batch, grid[0], grid[1], config.dim, device=device)

    def forward() -> None:
        with torch.no_grad(), autocast(device, dtype):
            body(x)

    def forward_backward() -> None:
        with autocast(device, dtype):
            loss = sum(m.float().mean() for m in body(x))
        loss.backward()
        body.zero_grad(set_to_none=True)

    try:
        fwd = time_fn(forward, device, warmup, iters)
        fwd_bwd = time_fn(forward_backward, device, warmup, iters)
        _free(device)
        memory = measure_peak_memory(forward_backward, device)
    except (RuntimeError, MemoryError) as err:
        if not is_out_of_memory(err):
            raise
        del net, body, x
        _free(device)
        return StackResult(None, None, None, "", params, "oom")
    return StackResult(fwd.median_ms, fwd_bwd.median_ms, memory.peak_mb, memory.method, params, "ok")


@dataclass(frozen=True)
class StepResult:
    """One training-step measurement at the largest batch that fit (``batch == 0``: not even 1 fits)."""

    batch: int
    step_ms: float | None
    images_per_s: float | None
    peak_mem_mb: float | None
    peak_mem_method: str
    status: str

    def row(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "step_ms": self.step_ms,
            "images_per_s": self.images_per_s,
            "peak_mem_mb": self.peak_mem_mb,
            "peak_mem_method": self.peak_mem_method,
            "status": self.status,
        }


def measure_train_step(
    make_model: Callable[[], nn.Module],
    image_hw: Size2D,
    in_chans: int,
    num_classes: int,
    batch: int,
    device: torch.device,
    dtype: str,
    warmup: int,
    iters: int,
) -> StepResult:
    """Images/s and peak memory of a training step; on out-of-memory the batch is halved until it fits.

    The model is built once by ``make_model`` (then moved to ``device``); memory is measured on a step after the
    warm-up, when AdamW's state already exists (so it is activations + gradients + workspaces of one step).
    """
    model = make_model().to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    loss_fn = nn.CrossEntropyLoss()

    def step(images: torch.Tensor, labels: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, dtype):
            loss = loss_fn(model(images).float(), labels)
        loss.backward()
        optimizer.step()

    while batch >= 1:
        images = torch.randn(batch, in_chans, image_hw[0], image_hw[1], device=device)
        labels = torch.randint(0, num_classes, (batch,), device=device)
        run = functools.partial(step, images, labels)
        try:
            timing = time_fn(run, device, warmup, iters)
            memory = measure_peak_memory(run, device)
        except (RuntimeError, MemoryError) as err:
            if not is_out_of_memory(err):
                raise
        else:
            return StepResult(
                batch, timing.median_ms, batch / (timing.median_ms / 1e3), memory.peak_mb, memory.method, "ok"
            )
        # freed here, after the handler: until then the error's traceback holds the failed step's tensors
        del images, labels, run
        optimizer.zero_grad(set_to_none=True)
        _free(device)
        batch //= 2
    return StepResult(0, None, None, None, "", "oom")
