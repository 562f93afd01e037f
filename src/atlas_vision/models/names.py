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
