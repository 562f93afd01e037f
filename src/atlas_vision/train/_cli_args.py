"""Tokenising ``--key value [value ...]`` / ``--key=value`` command lines with dotted config keys.

argparse needs every option declared up front; the training config has dozens of dotted keys (and free-form
``model.kwargs.*``), so the train and eval commands split the command line into ``(key, tokens)`` pairs here and
:mod:`atlas_vision.train.config_io` (OmegaConf structured configs) types and validates each value.
"""

from __future__ import annotations

import logging
import re
import sys

_NUMBER = re.compile(r"^-[0-9.]")


class UsageError(ValueError):
    """A malformed command line (the message says what was wrong)."""


def split_options(argv: list[str]) -> list[tuple[str, list[str]]]:
    """``["--a", "1", "2", "--b=x", "--flag"]`` -> ``[("a", ["1", "2"]), ("b", ["x"]), ("flag", [])]``.

    A value may start with ``-`` only if it is a number (``--optim.lr -1`` is a value, ``-h`` is a flag).
    """
    out: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in ("-h", "--help"):
            out.append(("help", []))
            i += 1
            continue
        if not token.startswith("--") or token == "--":
            raise UsageError(f"unexpected argument {token!r}: options look like --key value (e.g. --optim.lr 3e-4)")
        key, eq, value = token[2:].partition("=")
        if not key:
            raise UsageError(f"empty option name in {token!r}")
        values = [value] if eq else []
        i += 1
        if not eq:
            while i < len(argv) and (not argv[i].startswith("-") or _NUMBER.match(argv[i])):
                values.append(argv[i])
                i += 1
        out.append((key, values))
    return out


def one_value(key: str, values: list[str]) -> str:
    if len(values) != 1:
        raise UsageError(f"--{key} takes exactly one value, got {values or 'none'}")
    return values[0]


class _StderrHandler(logging.StreamHandler):
    """A stream handler writing to whatever ``sys.stderr`` is when a record is emitted (a redirect, a test's
    capture), not to the stream that was current when the handler was made."""

    @property
    def stream(self) -> object:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        del value


def setup_logging(verbose: bool = False) -> None:
    """INFO lines (``%(message)s``) of the atlas_vision loggers to stderr; idempotent."""
    logger = logging.getLogger("atlas_vision")
    if not any(getattr(h, "_atlas_cli", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._atlas_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
