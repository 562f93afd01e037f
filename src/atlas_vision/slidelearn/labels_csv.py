"""The labels CSV of a slide data set: ``slide_id,label`` and optionally ``split`` (``train`` or ``val``).

Every problem is a ``ValueError`` naming the file and line (the header is line 1): a missing column, an empty
``slide_id`` or ``label``, a duplicate ``slide_id``, an unknown ``split``, a label that differs from another only
in case or surrounding spaces, or a label that occurs only in the validation split (a typo, or a class the model
cannot learn).
"""

from __future__ import annotations

import csv
import difflib
import random
from dataclasses import dataclass
from pathlib import Path

SPLITS: tuple[str, ...] = ("train", "val")


@dataclass(frozen=True)
class LabelRow:
    """One slide of the CSV."""

    slide_id: str
    label: str
    split: str | None
    line: int
    """Line number in the CSV (header = 1), for error messages."""


@dataclass(frozen=True)
class SlideLabels:
    """The parsed CSV: rows of each split and the class names (sorted; numerically if all labels are ints)."""

    path: Path
    train: list[LabelRow]
    val: list[LabelRow]
    class_names: list[str]


def _where(path: Path, line: int) -> str:
    return f"{path}, line {line}"


def read_rows(path: str | Path) -> list[LabelRow]:
    """Parse and check the rows of ``path`` (no split assignment yet)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"labels CSV {path} does not exist (expected a file with columns slide_id,label[,split])"
        )
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [name.strip() for name in (reader.fieldnames or [])]
        missing = [name for name in ("slide_id", "label") if name not in header]
        if missing:
            raise ValueError(
                f"{_where(path, 1)}: the header must have the columns slide_id,label (optionally split); "
                f"missing {missing}, got {header}"
            )
        reader.fieldnames = header
        rows: list[LabelRow] = []
        seen: dict[str, int] = {}
        for record in reader:
            line = reader.line_num
            if None in record:
                raise ValueError(f"{_where(path, line)}: more fields than the header's {len(header)}: {record[None]}")
            slide_id = (record.get("slide_id") or "").strip()
            label = (record.get("label") or "").strip()
            split = (record.get("split") or "").strip() or None
            if not slide_id and not label and split is None:
                continue  # blank line
            if not slide_id:
                raise ValueError(f"{_where(path, line)}: empty slide_id")
            if not label:
                raise ValueError(f"{_where(path, line)}: slide {slide_id!r} has an empty label")
            if split is not None and split not in SPLITS:
                raise ValueError(
                    f"{_where(path, line)}: slide {slide_id!r} has split {split!r}; valid splits: {', '.join(SPLITS)} "
                    "(or leave the column empty)"
                )
            if slide_id in seen:
                raise ValueError(
                    f"{_where(path, line)}: slide_id {slide_id!r} is listed twice (first on line {seen[slide_id]})"
                )
            seen[slide_id] = line
            rows.append(LabelRow(slide_id, label, split, line))
    if not rows:
        raise ValueError(f"labels CSV {path} has no rows")
    _check_label_spelling(path, rows)
    return rows


def _check_label_spelling(path: Path, rows: list[LabelRow]) -> None:
    first: dict[str, LabelRow] = {}
    for row in rows:
        first.setdefault(row.label, row)
    by_folded: dict[str, LabelRow] = {}
    for label, row in first.items():
        other = by_folded.setdefault(label.casefold(), row)
        if other.label != label:
            raise ValueError(
                f"{_where(path, row.line)}: label {label!r} differs only in case from {other.label!r} "
                f"(line {other.line}); labels are case-sensitive -- fix the typo or rename one class"
            )


def _sorted_labels(labels: set[str]) -> list[str]:
    try:
        return sorted(labels, key=int)
    except ValueError:
        return sorted(labels)


def load_labels(path: str | Path, val_fraction: float, seed: int) -> SlideLabels:
    """Read the CSV and split it: by the ``split`` column when it is filled in on every row, otherwise a
    stratified random split with ``val_fraction`` of each class (at least one slide of each class stays in train)
    drawn from ``seed``.

    Raises:
        ValueError: see the module docstring; also a ``split`` column filled on some rows only.
    """
    path = Path(path)
    rows = read_rows(path)
    with_split = [row for row in rows if row.split is not None]
    if with_split and len(with_split) != len(rows):
        row = next(row for row in rows if row.split is None)
        raise ValueError(
            f"{_where(path, row.line)}: slide {row.slide_id!r} has no split while {len(with_split)} other rows have "
            "one; fill in the split column on every row or on none"
        )
    if with_split:
        train = [row for row in rows if row.split == "train"]
        val = [row for row in rows if row.split == "val"]
    else:
        train, val = _stratified_split(rows, val_fraction, seed)
    if not train or not val:
        raise ValueError(
            f"labels CSV {path}: need at least one train and one val slide, got {len(train)} train and {len(val)} val"
        )
    train_labels = {row.label for row in train}
    for row in val:
        if row.label not in train_labels:
            close = difflib.get_close_matches(row.label, sorted(train_labels), n=3)
            raise ValueError(
                f"{_where(path, row.line)}: label {row.label!r} of val slide {row.slide_id!r} never occurs in the "
                f"train split (training labels: {_sorted_labels(train_labels)}"
                + (f"; did you mean {close[0]!r}?" if close else "")
                + ")"
            )
    return SlideLabels(path, train, val, _sorted_labels(train_labels))


def _stratified_split(rows: list[LabelRow], val_fraction: float, seed: int) -> tuple[list[LabelRow], list[LabelRow]]:
    rng = random.Random(seed)
    val_ids: set[str] = set()
    by_label: dict[str, list[LabelRow]] = {}
    for row in rows:
        by_label.setdefault(row.label, []).append(row)
    for label in sorted(by_label):
        members = sorted(by_label[label], key=lambda r: r.slide_id)
        rng.shuffle(members)
        n_val = min(round(val_fraction * len(members)), len(members) - 1)
        val_ids.update(row.slide_id for row in members[:n_val])
    return [r for r in rows if r.slide_id not in val_ids], [r for r in rows if r.slide_id in val_ids]
