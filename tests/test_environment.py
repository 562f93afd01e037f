"""environment.py: what a benchmark row says about the machine."""

from __future__ import annotations

from pathlib import Path

from atlas_vision.environment import cpu_has_bf16_matrix_units, cpu_model


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 {flags}\n\nprocessor\t: 1\n")
    return path


def test_amx_flag_is_read_from_the_flags_line(tmp_path: Path) -> None:
    assert cpu_has_bf16_matrix_units(_cpuinfo(tmp_path, "avx512f amx_bf16 amx_tile"))
    # avx512_bf16 alone (e.g. AMD Zen 4) is not a matrix unit, and a flag's prefix is not the flag
    assert not cpu_has_bf16_matrix_units(_cpuinfo(tmp_path, "avx512f avx512_bf16 amx_bf16x"))


def test_unreadable_cpuinfo_means_no_amx(tmp_path: Path) -> None:
    assert cpu_has_bf16_matrix_units(tmp_path / "missing") is False


def test_cpu_model_is_never_empty() -> None:
    assert cpu_model().strip()
