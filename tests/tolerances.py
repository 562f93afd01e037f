"""Tests import their tolerances from here; the table itself lives beside the backends (``atlas_vision.ops.tolerances``)."""

from atlas_vision.ops.tolerances import TOLERANCES, tol

__all__ = ["TOLERANCES", "tol"]
