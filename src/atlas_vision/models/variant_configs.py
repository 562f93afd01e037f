"""The architecture of each registered Atlas variant (a diff from :class:`AtlasConfig`'s defaults).

Kept apart from :mod:`atlas_vision.models.variants` (the timm registration) so that registering with timm does not
import the model code; the names are listed once more, without any import, in :mod:`atlas_vision.models.names`.
"""

from __future__ import annotations

from atlas_vision.models.config import AtlasConfig
from atlas_vision.models.names import VARIANT_NAMES

# The CPU-sized network of the built-in long-range tasks: patch 8, 4x4-token windows (32x32 px), stride 2.
# At 64 px: 8x8 tokens in 2x2 windows + a 4x4 global scale; at 256 px: 32x32 -> 16x16 -> 8x8 -> 4x4.
# head_norm="batch": with the LayerNorm head most seeds of the default run stayed at chance (docs/benchmarks.md 6).
_TINY = {
    "embed_dim": 64, "num_heads": 4, "depths": (2, 2), "patch_size": 8, "window_size": 4, "pool_stride": 2,
    "stem_hidden": 16, "stem_depth": 1, "pos_embed_hidden": 64, "head_norm": "batch",
}  # fmt: skip
# The small pieces every test variant shares (seconds on CPU).
_TEST = {"pool_stride": 2, "stem_hidden": 8, "stem_depth": 1, "pos_embed_hidden": 16}

# Architecture of each variant, as a diff from AtlasConfig's defaults (which are Atlas-B at 1024 px).
VARIANT_CONFIGS: dict[str, AtlasConfig] = {
    # Paper sizes (spec 2.4): Base = 768/12, Small = 384/6; D = {2, 10}, P = 16, K = 16x16, S = 4x4.
    "atlas_base": AtlasConfig(embed_dim=768, num_heads=12, depths=(2, 10)),
    "atlas_small": AtlasConfig(embed_dim=384, num_heads=6, depths=(2, 10)),
    "atlas_tiny": AtlasConfig(**_TINY),
    # The same network with window attention only (no cross-scale communication): the control of the default task.
    "atlas_tiny_window": AtlasConfig(**_TINY, communication="single_scale"),
    # Tiny variants for tests; they cover patch 4/8/16, max/avg pooling, non-square windows and every communication
    # mode through overrides. (3 stages: timm's generic feature tests expect >= 3 levels.)
    "test_atlas": AtlasConfig(embed_dim=32, num_heads=2, depths=(1, 1, 1), patch_size=8, window_size=4, **_TEST),
    "test_atlas_3stage": AtlasConfig(
        embed_dim=24, num_heads=3, depths=(1, 2, 1), patch_size=4, window_size=(4, 6), **_TEST
    ),
    "test_atlas_p16": AtlasConfig(
        embed_dim=32, num_heads=4, depths=(2, 1, 1), patch_size=16, window_size=4, pool_op="avg", **_TEST
    ),
    "test_atlas_window": AtlasConfig(
        embed_dim=32, num_heads=2, depths=(1, 1, 1), patch_size=8, window_size=4, communication="single_scale", **_TEST
    ),
}

if tuple(VARIANT_CONFIGS) != VARIANT_NAMES:
    raise RuntimeError(
        f"atlas_vision.models.names.VARIANT_NAMES {VARIANT_NAMES} must list the variants of VARIANT_CONFIGS "
        f"{tuple(VARIANT_CONFIGS)} in the same order"
    )
