"""``open_slide``: pick the reader for a file by its suffix (``backend="auto"``) or by name."""

from __future__ import annotations

from pathlib import Path

from atlas_vision.slide.errors import SlideError
from atlas_vision.slide.reader import SlideReader
from atlas_vision.slide.reader_pillow import DEFAULT_MAX_PIXELS

TIFF_SUFFIXES = (".tif", ".tiff", ".svs", ".btf", ".tf8", ".tf2", ".qptiff")
OPENSLIDE_SUFFIXES = (".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide")
PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SUPPORTED_SUFFIXES = TIFF_SUFFIXES + OPENSLIDE_SUFFIXES + PILLOW_SUFFIXES
BACKENDS = ("auto", "tifffile", "openslide", "pillow")


def supported_formats() -> str:
    return (
        f"tifffile: {' '.join(TIFF_SUFFIXES)} (incl. OME-TIFF, SVS); openslide: {' '.join(OPENSLIDE_SUFFIXES)}; "
        f"pillow: {' '.join(PILLOW_SUFFIXES)}"
    )


def open_slide(path: str | Path, backend: str = "auto", max_pixels: int = DEFAULT_MAX_PIXELS) -> SlideReader:
    """Open ``path`` lazily.

    Args:
        backend: ``auto`` (by suffix), ``tifffile``, ``openslide`` or ``pillow``.
        max_pixels: largest image the Pillow reader decodes (it holds the whole image in memory).

    Raises:
        FileNotFoundError: the file does not exist.
        SlideError: unsupported format (the message lists the supported ones) or an unreadable file.
    """
    path = Path(path)
    if backend not in BACKENDS:
        raise SlideError(f"unknown reader backend {backend!r}; valid: {', '.join(BACKENDS)}")
    if not path.exists():
        raise FileNotFoundError(f"slide not found: {path}")
    if path.is_dir() and path.suffix.lower() not in OPENSLIDE_SUFFIXES:
        raise SlideError(f"{path} is a directory, not a slide file")
    suffix = path.suffix.lower()
    if backend == "auto":
        if suffix in TIFF_SUFFIXES:
            backend = "tifffile"
        elif suffix in OPENSLIDE_SUFFIXES:
            backend = "openslide"
        elif suffix in PILLOW_SUFFIXES:
            backend = "pillow"
        else:
            raise SlideError(
                f"unsupported slide format {suffix or '(no suffix)'!r} of {path.name}; supported: {supported_formats()}"
            )
    if backend == "tifffile":
        from atlas_vision.slide.reader_tiff import TiffReader

        return TiffReader(path)
    if backend == "openslide":
        from atlas_vision.slide.reader_openslide import OpenSlideReader

        return OpenSlideReader(path)
    from atlas_vision.slide.reader_pillow import PillowReader

    return PillowReader(path, max_pixels=max_pixels)
