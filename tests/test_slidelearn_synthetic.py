"""The order task: one brown and one blue mark in two different strips, label = which is on the left, every strip
drawn from the same distribution (so the bag of cells carries no label information), deterministic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from atlas_vision.slidelearn.synthetic import BLUE, BROWN, CLASS_NAMES, SlideTaskParams, slide_spec, write_task_slide

PARAMS = SlideTaskParams()


def test_marks_labels_and_strips() -> None:
    labels = []
    for i in range(200):
        spec = slide_spec(PARAMS, seed=1, index=i)
        (x1, _, c1), (x2, _, c2) = spec.marks
        assert {c1, c2} == {BROWN, BLUE}  # always exactly one mark of each stain
        assert spec.label == (1 if c1 == BROWN else 0)  # label: the left mark's stain
        left, right = spec.marked_strips
        assert left < right and int(x1 // PARAMS.strip) == left and int(x2 // PARAMS.strip) == right
        for x, y, _ in spec.marks:  # each mark lies inside the tissue of its strip
            assert spec.layout.contains(np.array([x]), np.array([y]))[0]
        labels.append(spec.label)
    assert 80 <= sum(labels) <= 120  # balanced
    assert CLASS_NAMES[1] == "brown-left"


def test_strips_are_exchangeable() -> None:
    """Piece and mark positions relative to their strip have the same distribution in every strip (means within
    noise), so no region-local feature tells which strip -- hence which label -- a mark belongs to."""
    rel: dict[int, list[float]] = {0: [], 1: [], 2: []}
    for i in range(600):
        spec = slide_spec(PARAMS, seed=2, index=i)
        for (x, _, _), strip in zip(spec.marks, spec.marked_strips):
            rel[strip].append(x / PARAMS.strip - strip)
    means = [np.mean(v) for v in rel.values()]
    stderr = max(np.std(v) / math.sqrt(len(v)) for v in rel.values())
    assert max(means) - min(means) < 5 * stderr


def test_deterministic_and_different_per_index() -> None:
    a, b = slide_spec(PARAMS, 3, 7), slide_spec(PARAMS, 3, 7)
    assert a == b
    assert slide_spec(PARAMS, 3, 8).marks != a.marks


def test_written_slide_shows_both_marks(tmp_path) -> None:
    import tifffile

    slide, spec = write_task_slide(tmp_path / "s.tif", PARAMS, seed=0, index=5)
    assert slide.level_dimensions == ((768, 256), (384, 128))
    with tifffile.TiffFile(slide.path) as tif:
        image = tif.pages[0].asarray()
    for x, y, rgb in spec.marks:
        centre = image[int(y) - 3 : int(y) + 4, int(x) - 3 : int(x) + 4].reshape(-1, 3).mean(0)
        assert np.abs(centre - np.array(rgb)).max() < 30  # JPEG tolerance


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"columns": 1}, "columns must be >= 2"),
        ({"width": 770}, "must be a multiple of columns=3"),
        ({"mark_radius": 40.0}, r"mark_radius must be in \[2, 32\]"),
    ],
)
def test_bad_params(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SlideTaskParams(**kwargs)
