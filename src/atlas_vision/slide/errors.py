"""Errors of the slide pipeline; all are ``ValueError`` subclasses so the CLI turns them into one-line messages."""

from __future__ import annotations


class SlideError(ValueError):
    """An input or option problem that names the offending value (the CLI prints it and exits with code 2)."""


class RegionReadError(SlideError):
    """A region could not be read or decoded (e.g. a corrupt or truncated tile).

    Attributes:
        region: ``(x, y, width, height)`` in the pixels of the level that was read.
        level: the pyramid level.
    """

    def __init__(self, message: str, region: tuple[int, int, int, int], level: int):
        super().__init__(message)
        self.region = region
        self.level = level
