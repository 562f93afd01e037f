"""Validation of the stage indices asked of ``features_only=True`` / ``forward_intermediates``.

timm's ``feature_take_indices`` accepts duplicates (``out_indices=(0, 0)``) and out-of-range indices without a word;
Atlas would then return fewer maps than ``feature_info`` lists.  Atlas refuses both instead (one clear ``ValueError``),
so the list of maps and ``feature_info`` always agree.
"""

from __future__ import annotations

from collections.abc import Sequence


def check_out_indices(indices: int | Sequence[int], num_stages: int) -> int | tuple[int, ...]:
    """``indices`` normalised (an int ``n`` = the last ``n`` stages stays an int; a sequence becomes a tuple).

    Negative indices count from the end (``-1`` = last stage), as in timm.

    Raises:
        ValueError: an index outside ``[-num_stages, num_stages - 1]``, the same stage twice, an empty sequence, or
            an int outside ``1..num_stages``.
        TypeError: an index that is not an int.
    """
    if isinstance(indices, bool):
        raise TypeError(f"out_indices must be an int or a sequence of ints, got {indices!r}")
    if isinstance(indices, int):
        if not 1 <= indices <= num_stages:
            raise ValueError(
                f"out_indices={indices} (the last n stages) must be in 1..{num_stages}: this model has {num_stages} "
                "stages"
            )
        return indices
    values = tuple(indices)
    if not values:
        raise ValueError(f"out_indices must name at least one stage (0..{num_stages - 1}), got {indices!r}")
    for index in values:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"out_indices must be ints, got {index!r} in {indices!r}")
        if not -num_stages <= index < num_stages:
            raise ValueError(
                f"out_indices={tuple(values)}: stage {index} does not exist; this model has {num_stages} stages "
                f"(valid indices 0..{num_stages - 1}, or -{num_stages}..-1 from the end)"
            )
    resolved = [i % num_stages for i in values]
    if len(set(resolved)) != len(resolved):
        raise ValueError(
            f"out_indices={tuple(values)} names a stage twice (stages {resolved}); each stage's map is returned once, "
            "so list each stage at most once"
        )
    return values
