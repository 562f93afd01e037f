"""The architecture of each registered Atlas-3D variant (an :class:`Atlas3DConfig` diff).

Kept apart from :mod:`atlas_vision.models.variants3d` (the timm registration) so that registering with timm does not
import the model code (the registration runs from timm's import hook, possibly while the model modules are still
being imported); the names are listed once more, without any import, in :mod:`atlas_vision.models.names`.

Geometry of the paper-sized variants: patch 16, windows of 8x8x8 = 512 tokens, stride 2 (8 fine windows per coarse
window, K/S = 4 per axis as in the 2-D models' 16/4). A 512^3 CT volume is 32^3 tokens -> 16^3 -> 8^3 (one window).
"""

from __future__ import annotations

from atlas_vision.models.atlas3d import Atlas3DConfig

_TINY = {
    "embed_dim": 64, "num_heads": 4, "depths": (2, 2), "patch_size": 8, "window_size": 4, "pool_stride": 2,
    "stem_hidden": 16, "stem_depth": 1, "pos_embed_hidden": 64, "head_norm": "batch",
}  # fmt: skip
_TEST = {
    "embed_dim": 32, "num_heads": 2, "depths": (1, 1, 1), "patch_size": 4, "window_size": 4, "pool_stride": 2,
    "stem_hidden": 8, "stem_depth": 1, "pos_embed_hidden": 16,
}  # fmt: skip

VARIANT_CONFIGS_3D: dict[str, Atlas3DConfig] = {
    "atlas3d_base": Atlas3DConfig(embed_dim=768, num_heads=12, depths=(2, 10)),
    "atlas3d_small": Atlas3DConfig(embed_dim=384, num_heads=6, depths=(2, 10)),
    # CPU-sized: patch 8, 4x4x4-token windows (32^3 voxels), stride 2; at 64^3 voxels: 8^3 tokens in 2x2x2 windows
    # + a 4^3 global scale. The built-in 3-D long-range task uses it.
    "atlas3d_tiny": Atlas3DConfig(**_TINY),
    "atlas3d_tiny_window": Atlas3DConfig(**_TINY, communication="single_scale"),  # window-only control
    # test variants (seconds on CPU): isotropic patch 4; anisotropic patch/window/stride; window-only
    "test3d_atlas": Atlas3DConfig(**_TEST),
    "test3d_atlas_aniso": Atlas3DConfig(
        embed_dim=24,
        num_heads=3,
        depths=(1, 2),
        patch_size=(4, 8, 8),
        window_size=(2, 4, 4),
        pool_stride=(2, 2, 4),
        stem_hidden=8,
        stem_depth=1,
        pos_embed_hidden=16,
    ),
    "test3d_atlas_window": Atlas3DConfig(**_TEST, communication="single_scale"),
}
