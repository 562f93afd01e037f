"""Expanding ``slide embed`` inputs: files, folders (their slide files, sorted) and list files (``.txt`` / ``.lst``:
one path per line, ``#`` comments; relative paths are relative to the list file)."""

from __future__ import annotations

from pathlib import Path

from atlas_vision.slide.errors import SlideError
from atlas_vision.slide.open import SUPPORTED_SUFFIXES

LIST_SUFFIXES = (".txt", ".lst")


def slide_id_of(path: Path) -> str:
    """The output folder name of a slide: its file name without the suffix (and without ``.ome``)."""
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def expand_inputs(inputs: list[str | Path]) -> list[Path]:
    """The slide files named by ``inputs``, in order, with duplicate slide ids refused."""
    slides: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir() and path.suffix.lower() not in SUPPORTED_SUFFIXES:
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in SUPPORTED_SUFFIXES)
            if not found:
                raise SlideError(f"folder {path} contains no slide files ({' '.join(SUPPORTED_SUFFIXES)})")
            slides += found
        elif path.suffix.lower() in LIST_SUFFIXES and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    entry = Path(line)
                    slides.append(entry if entry.is_absolute() else path.parent / entry)
        else:
            slides.append(path)
    seen: dict[str, Path] = {}
    for slide in slides:
        key = slide_id_of(slide)
        if key in seen and seen[key] != slide:
            raise SlideError(f"two slides map to the same output folder {key!r}: {seen[key]} and {slide}")
        seen[key] = slide
    return list(dict.fromkeys(slides))
