"""atlas-vision: Multi-Scale Attention and the Atlas backbone for very high-resolution images.

``import atlas_vision`` registers the Atlas models with timm (``timm.create_model("atlas_base")``).
"""

from atlas_vision.layers import Communication, MSABlock
from atlas_vision.models import Atlas, AtlasConfig, create_model, list_models
from atlas_vision.ops import Backend, MultiScaleLayout, PoolOp, bottomup_attention, summarize, topdown_attention

import atlas_vision.mixers  # noqa: E402,F401  (registers the `mixer_net` benchmark network with timm)
import atlas_vision.slidelearn  # noqa: E402,F401  (registers the slide heads `slide_*` with timm)

__version__ = "0.1.0"

__all__ = [
    "Atlas",
    "AtlasConfig",
    "Backend",
    "Communication",
    "MSABlock",
    "MultiScaleLayout",
    "PoolOp",
    "__version__",
    "bottomup_attention",
    "create_model",
    "list_models",
    "summarize",
    "topdown_attention",
]
