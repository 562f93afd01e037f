"""The package version, in a module of its own so that reading it imports nothing else (no torch, no models)."""

__version__ = "0.1.0"
