"""environment.py: what a benchmark row says about the machine."""

from __future__ import annotations

from pathlib import Path

from atlas_vision.environment import cpu_fast_bf16, cpu_model


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\n")
    return path


def test_fast_bf16_units_are_read_from_the_flags_line(tmp_path: Path) -> None:
    assert "AMX" in cpu_fast_bf16(_cpuinfo(tmp_path, "avx512f amx_bf16 amx_tile"))
    assert "AVX512-BF16" in cpu_fast_bf16(_cpuinfo(tmp_path, "avx512f avx512_bf16"))  # e.g. AMD Zen 4
    assert "AMX" in cpu_fast_bf16(_cpuinfo(tmp_path, "avx512_bf16 amx_bf16"))  # both: the faster unit is named
    # a flag's prefix is not the flag, and AVX-512 without bf16 is not enough
    assert cpu_fast_bf16(_cpuinfo(tmp_path, "avx512f amx_bf16x avx512_bf16x")) is None


def test_unreadable_cpuinfo_means_no_fast_bf16(tmp_path: Path) -> None:
    assert cpu_fast_bf16(tmp_path / "missing") is None


def test_cpu_model_is_never_empty() -> None:
    assert cpu_model().strip()
