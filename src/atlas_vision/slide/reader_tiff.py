"""TIFF, OME-TIFF, SVS and other TIFF-based slides through ``tifffile`` (lazy tile reads through its zarr store;
``imagecodecs`` decodes JPEG, JPEG-2000, LZW, deflate, ... tiles).

The series with the largest image is the slide (an SVS file's label, macro and thumbnail are smaller series); its
pyramid levels are whatever tifffile recognises (SubIFDs, a chain of reduced pages, SVS levels, OME). Tiled and
stripped files, grey / RGB / RGBA, chunky or planar samples are read; only the tiles or strips that intersect a
region are decoded (a file stored as one huge strip therefore decodes the whole strip for every read).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from atlas_vision.slide.errors import RegionReadError, SlideError
from atlas_vision.slide.mpp_metadata import mpp_from_aperio, mpp_from_dpi, mpp_from_ome
from atlas_vision.slide.reader import SlideReader, to_rgb_uint8


class TiffReader(SlideReader):
    backend = "tifffile"

    def __init__(self, path: str | Path):
        import tifffile
        import zarr

        path = Path(path)
        try:
            self._tif = tifffile.TiffFile(path)
        except (tifffile.TiffFileError, ValueError, OSError) as exc:
            raise SlideError(f"{path}: not a readable TIFF ({exc})") from exc
        try:
            series = max(self._tif.series, key=lambda s: _yx_area(s.shape, s.axes))
            self._axes = series.axes
            if "Y" not in self._axes or "X" not in self._axes:
                raise SlideError(f"{path}: TIFF series has axes {self._axes!r}, expected an image with Y and X")
            self._stores = [series.aszarr(level=i) for i in range(len(series.levels))]
            self._arrays = [zarr.open(store, mode="r") for store in self._stores]
            dims = [(a.shape[self._axes.index("X")], a.shape[self._axes.index("Y")]) for a in self._arrays]
            super().__init__(path, dims, self._read_mpp())
        except Exception:
            self._tif.close()
            raise

    def _read_mpp(self) -> float | None:
        tif = self._tif
        if tif.is_ome:
            return mpp_from_ome(tif.ome_metadata)
        page = tif.pages.first
        if tif.is_svs:
            return mpp_from_aperio(page.description)
        xres, unit = page.tags.get("XResolution"), page.tags.get("ResolutionUnit")
        if xres is None or unit is None:
            return None
        num, den = xres.value
        unit_name = {2: "inch", 3: "cm"}.get(int(unit.value), "")
        return mpp_from_dpi(num / den if den else 0.0, unit_name)

    def _read_inside(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        sample_axis = "S" if "S" in self._axes else ("C" if "C" in self._axes else "")
        index, kept = [], []  # kept: the axes left in the block, in file order
        for axis in self._axes:
            if axis == "Y":
                index.append(slice(y, y + height))
            elif axis == "X":
                index.append(slice(x, x + width))
            elif axis == sample_axis:
                index.append(slice(None))
            else:
                index.append(0)  # T, Z, I, or C next to S: the first plane
                continue
            kept.append(axis)
        try:
            block = np.asarray(self._arrays[level][tuple(index)])
        except Exception as exc:  # imagecodecs / zlib / tifffile raise many types for damaged data
            raise RegionReadError(
                f"{self.path.name}: cannot decode level {level} region x={x} y={y} {width}x{height} "
                f"({type(exc).__name__}: {exc})",
                (x, y, width, height),
                level,
            ) from exc
        order = [kept.index("Y"), kept.index("X")] + [i for i, a in enumerate(kept) if a not in "YX"]
        return to_rgb_uint8(block.transpose(order))  # [h, w, samples]

    def close(self) -> None:
        for store in self._stores:
            store.close()
        self._tif.close()


def _yx_area(shape: tuple[int, ...], axes: str) -> int:
    if "Y" not in axes or "X" not in axes:
        return 0
    return shape[axes.index("Y")] * shape[axes.index("X")]
