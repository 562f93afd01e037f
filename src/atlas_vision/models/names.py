"""Names of the registered Atlas variants, importing nothing (``atlas-vision list-models`` answers without torch)."""

VARIANT_NAMES: tuple[str, ...] = (
    "atlas_base",
    "atlas_small",
    "atlas_tiny",
    "atlas_tiny_window",
    "test_atlas",
    "test_atlas_3stage",
    "test_atlas_p16",
    "test_atlas_window",
)

# the 3-D variants (atlas_vision.models.variants3d), registered with timm beside the 2-D ones
VARIANT_NAMES_3D: tuple[str, ...] = (
    "atlas3d_base",
    "atlas3d_small",
    "atlas3d_tiny",
    "atlas3d_tiny_window",
    "test3d_atlas",
    "test3d_atlas_aniso",
    "test3d_atlas_window",
)
