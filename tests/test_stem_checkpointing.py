"""Gradient checkpointing of the conv stems (``layers/checkpointing.py``): a checkpointed training step equals a plain
one -- output, every gradient and every BatchNorm statistic -- on awkward shapes, in eager mode and compiled, and
it keeps less memory for backward (the resident-memory test, a fresh process of ~10 s, is marked slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from tolerances import tol

from atlas_vision.layers import checkpointing
from atlas_vision.layers.stem import ConvStem
from atlas_vision.layers.stem3d import ConvStem3d
from atlas_vision.requirements import release


def _stem2d() -> ConvStem:
    return ConvStem(3, 32, patch_size=16, hidden=8, depth=2)  # conv0, 2 stages of 2 residual blocks


def _stem3d() -> ConvStem3d:
    return ConvStem3d(1, 16, patch_size=(4, 8, 8), hidden=4, depth=1)  # anisotropic: one stage, stride (1, 2, 2)


CASES = {
    "2d-B3-37x53": (_stem2d, (3, 3, 37, 53)),
    "2d-B1-20x16": (_stem2d, (1, 3, 20, 16)),
    "3d-B2-9x13x11": (_stem3d, (2, 1, 9, 13, 11)),
}


def _train_step(
    stem: torch.nn.Module, x: torch.Tensor, call=None
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """One forward (through ``call``, default ``stem``) + backward in training mode: the output, the input's gradient
    and every parameter's gradient."""
    x = x.clone().requires_grad_(True)
    out = (stem if call is None else call)(x)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    return out.detach(), x.grad, {name: p.grad for name, p in stem.named_parameters()}


@pytest.mark.parametrize("case", list(CASES))
def test_checkpointed_stem_step_equals_a_plain_step(case: str) -> None:
    """Output and gradients equal in float64; the running statistics and batch counts after the step are exactly
    those of the plain step (a recomputation that updated them again would differ: momentum applied twice)."""
    build, shape = CASES[case]
    torch.manual_seed(0)
    plain = build().double().train()
    checkpointed = build().double().train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.grad_checkpointing = True
    x = torch.randn(shape, dtype=torch.float64)
    for _ in range(2):  # two steps: the second starts from the statistics the first left
        out, x_grad, grads = _train_step(plain, x)
        out_c, x_grad_c, grads_c = _train_step(checkpointed, x)
        exact = {"atol": 1e-12, "rtol": 1e-10}
        torch.testing.assert_close(out_c, out, **exact)
        torch.testing.assert_close(x_grad_c, x_grad, **exact)
        for name, grad in grads.items():
            torch.testing.assert_close(grads_c[name], grad, **exact, msg=name)
        for (name, buffer), buffer_c in zip(plain.named_buffers(), checkpointed.buffers()):
            assert torch.equal(buffer_c, buffer), f"{name} differs after a checkpointed step"
        plain.zero_grad()
        checkpointed.zero_grad()


def test_checkpointing_only_applies_when_autograd_records() -> None:
    """Under ``torch.no_grad()`` (evaluation) the checkpointed stem is the plain stem, bit for bit."""
    torch.manual_seed(0)
    stem = _stem2d().eval()
    x = torch.randn(2, 3, 40, 24)
    with torch.no_grad():
        plain = stem(x)
        stem.grad_checkpointing = True
        assert torch.equal(stem(x), plain)


def _plain_and_checkpointed_stem() -> tuple[ConvStem, ConvStem]:
    """Two small 2-D stems with the same weights in training mode (conv0, one block, one LayerNorm + conv), the
    second checkpointed."""
    torch.manual_seed(0)
    plain = ConvStem(3, 16, patch_size=8, hidden=4, depth=1).train()
    checkpointed = ConvStem(3, 16, patch_size=8, hidden=4, depth=1).train()
    checkpointed.load_state_dict(plain.state_dict())
    checkpointed.grad_checkpointing = True
    return plain, checkpointed


def _assert_same_statistics(plain: torch.nn.Module, checkpointed: torch.nn.Module) -> None:
    """Every BatchNorm buffer of ``checkpointed`` as in ``plain``: step counts exactly, statistics to fp32 tolerance."""
    for (name, buffer), buffer_c in zip(plain.named_buffers(), checkpointed.buffers()):
        if name.endswith("num_batches_tracked"):
            assert torch.equal(buffer_c, buffer), name
        else:
            torch.testing.assert_close(buffer_c, buffer, **tol("model", torch.float32, "fwd"), msg=name)


def test_compiled_checkpointed_stem_updates_statistics_once() -> None:
    """Inside ``torch.compile`` (``aot_eager``: dynamo and the autograd partitioner, no codegen) the plain checkpoint
    is used, and the compiled step still leaves the statistics and gradients of an eager plain step."""
    plain, checkpointed = _plain_and_checkpointed_stem()
    compiled = torch.compile(checkpointed, backend="aot_eager", fullgraph=True)
    x = torch.randn(2, 3, 37, 53)
    out, x_grad, grads = _train_step(plain, x)
    out_c, x_grad_c, grads_c = _train_step(checkpointed, x, call=compiled)
    torch.testing.assert_close(out_c, out, **tol("model", torch.float32, "fwd"))
    torch.testing.assert_close(x_grad_c, x_grad, **tol("model", torch.float32, "bwd"))
    for name, grad in grads.items():
        torch.testing.assert_close(grads_c[name], grad, **tol("model", torch.float32, "bwd"), msg=name)
    _assert_same_statistics(plain, checkpointed)


@pytest.mark.parametrize("older_torch", [False, True], ids=["this-torch", "torch-before-minimum"])
def test_compiled_stem_checkpoints_only_on_a_torch_that_updates_statistics_once(monkeypatch, older_torch) -> None:
    """Compiled, the stem's units go through ``torch.utils.checkpoint`` from torch
    ``COMPILED_CHECKPOINT_MIN_TORCH`` on; on an older torch (simulated by raising the minimum) they run plain, since
    torch 2.8.0 replayed their BatchNorm updates in the compiled backward (``num_batches_tracked`` 2 after one step).
    Either way the step leaves the statistics of a plain step."""
    if not older_torch and release(torch.__version__) < checkpointing.COMPILED_CHECKPOINT_MIN_TORCH:
        pytest.skip(f"torch {torch.__version__} predates the compiled stem checkpoint")
    if older_torch:
        monkeypatch.setattr(checkpointing, "COMPILED_CHECKPOINT_MIN_TORCH", (99, 0))
    calls = []
    real_checkpoint = checkpointing.checkpoint

    def counted_checkpoint(*args, **kwargs):
        calls.append(1)
        return real_checkpoint(*args, **kwargs)

    monkeypatch.setattr(checkpointing, "checkpoint", counted_checkpoint)
    torch._dynamo.reset()
    plain, checkpointed = _plain_and_checkpointed_stem()
    x = torch.randn(3, 3, 29, 45)
    _train_step(plain, x)
    _train_step(checkpointed, x, call=torch.compile(checkpointed, backend="aot_eager", fullgraph=True))
    torch._dynamo.reset()
    units = len(checkpointing.stem_units(checkpointed.conv0, checkpointed.stages))
    assert len(calls) == (0 if older_torch else units)
    _assert_same_statistics(plain, checkpointed)


def test_model_grad_checkpointing_reaches_the_stem() -> None:
    import atlas_vision

    model = atlas_vision.create_model("test_atlas")
    model.set_grad_checkpointing(True)
    assert model.stem.grad_checkpointing and all(stage.grad_checkpointing for stage in model.stages)
    model.set_grad_checkpointing(False)
    assert not model.stem.grad_checkpointing


_PEAK_SCRIPT = """
import json, torch
from atlas_vision.bench.timing import measure_peak_memory
from atlas_vision.layers.stem import ConvStem
torch.manual_seed(0)
torch.set_num_threads(2)
def peak_above_start(checkpointed):
    stem = ConvStem(3, 128, patch_size=16, hidden=16, depth=3).train()
    stem.grad_checkpointing = checkpointed
    x = torch.randn(1, 3, 256, 256)
    peak = measure_peak_memory(lambda: stem(x).sum().backward(), torch.device("cpu"))
    assert peak.method == "vmhwm_reset", peak
    return peak.peak_mb
print(json.dumps({"plain": peak_above_start(False), "checkpointed": peak_above_start(True)}))
"""


def test_checkpointed_stem_keeps_only_unit_inputs_for_backward() -> None:
    """Bytes autograd saves for backward outside checkpoint frames (which keep each unit's input, the previous unit's
    output): everything the units' convs, norms and activations save is gone. Deterministic; the resident-memory
    peak itself is measured by the slow test below and by ``docs/benchmarks.md`` section 7."""

    def saved_bytes(checkpointed: bool) -> int:
        torch.manual_seed(0)
        stem = _stem2d().train()
        stem.grad_checkpointing = checkpointed
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = stem(torch.randn(2, 3, 64, 48))
        out.sum().backward()
        return total

    plain, checkpointed = saved_bytes(False), saved_bytes(True)
    assert checkpointed < 0.3 * plain, (checkpointed, plain)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc to read peak memory")
def test_checkpointed_stem_step_peaks_lower() -> None:
    """The resident-memory peak of a stem step (fresh process; glibc's mmap threshold fixed, so freed activations
    return to the system and the peak follows what is alive): checkpointed well below plain."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT], capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    peaks = json.loads(proc.stdout.strip().splitlines()[-1])
    assert peaks["checkpointed"] < 0.6 * peaks["plain"], peaks


def test_checkpointing_memory_benchmark_child_measures_on_cpu(monkeypatch) -> None:
    """``benchmarks/checkpointing_memory.py``'s measurement, in-process at a tiny size (the script runs it in a fresh
    process per mode), and its option errors."""
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    import checkpointing_memory

    row = checkpointing_memory.child("test_atlas", 64, 2, "all", steps=2, threads=0, device="cpu")
    assert row["mode"] == "all" and row["peak_mb"] >= 0 and row["step_s"] > 0, row
    with pytest.raises(SystemExit):
        checkpointing_memory.main(["--modes", "none,bogus"])
