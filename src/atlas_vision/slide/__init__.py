"""Whole-slide and gigapixel images: readers, tissue detection, region and exact embedding into per-stage feature
grids (``features.zarr``), heatmaps, resume and ``torchrun`` sharding, synthetic slides. See ``docs/slide.md``.

Heavy or format-specific dependencies (tifffile, imagecodecs, zarr; openslide) are imported only when used:
``pip install 'atlas-vision[slide]'`` (and ``[openslide]`` for NDPI/MRXS/SCN/...).
"""

from atlas_vision.slide.errors import RegionReadError, SlideError
from atlas_vision.slide.features import SlideFeatures, open_features
from atlas_vision.slide.open import open_slide, supported_formats
from atlas_vision.slide.reader import SlideReader
from atlas_vision.slide.resolution import SlideView, select_resolution
from atlas_vision.slide.synthetic import TissueLayout, TissuePiece, disc_painter, write_synthetic_slide

__all__ = [
    "RegionReadError",
    "SlideError",
    "SlideFeatures",
    "SlideReader",
    "SlideView",
    "TissueLayout",
    "TissuePiece",
    "disc_painter",
    "open_features",
    "open_slide",
    "select_resolution",
    "supported_formats",
    "write_synthetic_slide",
]
