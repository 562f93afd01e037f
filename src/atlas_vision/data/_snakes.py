"""Snake growth with a dilated occupancy mask: the geometric core of the Pathfinder generator.

Everything here works on the ``antialias``x canvas, in canvas pixels.  Speed comes from precomputing, once per
parameter set, integer *flat offsets* into the occupancy mask:

* directions are quantised to ``NUM_DIRECTIONS`` (3 degree steps); a paddle in direction ``d`` may turn by
  ``k`` steps with ``|k| * 3deg < 90deg / continuity``, weight ``cos(continuity * k * 3deg) ** 2``;
* for each direction ``d`` and each candidate turn ``k``, the mask offsets of the points (every canvas pixel) of the
  gap + paddle that a candidate would cover: one gather tests all candidates at once;
* for each direction, the offsets of every mask pixel within ``clearance`` of a paddle (its "capsule"): committing
  a paddle is one scatter.

Positions stay continuous (the drawn paddles use exact coordinates); only the mask lookups round them, so the
clearance between snakes is enforced to within one canvas pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

NUM_DIRECTIONS = 120  # direction quantisation: 3 degree steps
BACKTRACKS = 4  # dead ends per snake that may be undone by re-drawing the previous paddle


@dataclass(frozen=True)
class SnakeGeometry:
    """Canvas-pixel geometry of the snakes of one parameter set.

    Attributes:
        side: canvas side (output size * antialias).
        length: paddle length.
        margin: gap between consecutive paddles; also the clearance between snakes on top of the thickness.
        clearance: minimum centre-line distance between paddles of different snakes (thickness + margin).
        border: centre lines stay inside ``[border, side - 1 - border]``.
        continuity: turning stiffness.
    """

    side: int
    length: float
    margin: float
    clearance: float
    border: int
    continuity: float

    @property
    def pad(self) -> int:
        """Extra mask band around the canvas so that no lookup or stamp ever needs clipping."""
        return math.ceil(self.margin + 2 * self.length + 2 * self.clearance) + 2

    @property
    def width(self) -> int:
        """Side of the padded occupancy mask."""
        return self.side + 2 * self.pad


@dataclass(frozen=True)
class _Tables:
    turns: np.ndarray  # [K] candidate turns in direction steps
    weights: np.ndarray  # [K] continuity weights of the turns
    first: np.ndarray  # [D, T1] flat offsets of the test points of a first paddle (no gap) in direction d
    step: np.ndarray  # [D, K, T] flat offsets of the test points of gap + paddle for candidate k after direction d
    capsule: np.ndarray  # [D, S] flat offsets of the pixels within clearance of a paddle in direction d
    unit: np.ndarray  # [D, 2] (sin, cos) of each direction
    unit_list: list[tuple[float, float]]  # the same as Python floats (scalar maths in the growth loop)
    turn_list: list[int]  # turns as Python ints


def _flat(dy: np.ndarray, dx: np.ndarray, width: int) -> np.ndarray:
    return np.rint(dy).astype(np.int64) * width + np.rint(dx).astype(np.int64)


@lru_cache(maxsize=64)
def _tables(g: SnakeGeometry) -> _Tables:
    angles = 2 * math.pi * np.arange(NUM_DIRECTIONS) / NUM_DIRECTIONS
    unit = np.stack([np.sin(angles), np.cos(angles)], axis=1)  # [D, 2]
    max_turn = math.pi / (2 * g.continuity)  # weight reaches 0 here; candidates stay strictly inside
    step_angle = 2 * math.pi / NUM_DIRECTIONS
    k_max = math.ceil(max_turn / step_angle) - 1
    turns = np.arange(-k_max, k_max + 1)
    weights = np.cos(np.minimum(g.continuity * np.abs(turns) * step_angle, math.pi / 2)) ** 2
    # test points every canvas pixel: the paddle only (first) or the gap and the paddle (next)
    t_first = np.append(np.arange(0.0, g.length, 1.0), g.length)
    t_step = np.append(np.arange(0.0, g.margin + g.length, 1.0), g.margin + g.length)
    first = _flat(unit[:, :1] * t_first, unit[:, 1:] * t_first, g.width)  # [D, T1]
    cand = (np.arange(NUM_DIRECTIONS)[:, None] + turns[None, :]) % NUM_DIRECTIONS  # [D, K]
    step = _flat(unit[cand, :1] * t_step, unit[cand, 1:] * t_step, g.width)  # [D, K, T]
    # capsule: integer pixels within clearance of the segment from (0, 0) to length * unit[d]
    r = math.ceil(g.length + g.clearance) + 1
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].reshape(2, -1).astype(np.float64)
    caps = []
    for sin, cos in unit:
        t = np.clip(yy * sin + xx * cos, 0.0, g.length)
        inside = (yy - t * sin) ** 2 + (xx - t * cos) ** 2 <= g.clearance**2
        caps.append(_flat(yy[inside], xx[inside], g.width))
    size = max(len(c) for c in caps)
    capsule = np.stack([np.pad(c, (0, size - len(c)), mode="edge") for c in caps])  # repeat: harmless duplicates
    return _Tables(
        turns=turns,
        weights=weights,
        first=first,
        step=step,
        capsule=capsule,
        unit=unit,
        unit_list=[(float(a), float(b)) for a, b in unit],
        turn_list=[int(k) for k in turns],
    )


@lru_cache(maxsize=64)
def _disc(radius: float, width: int) -> np.ndarray:
    """Flat mask offsets of the integer pixels within ``radius`` of the origin."""
    r = math.ceil(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    inside = yy**2 + xx**2 <= radius * radius
    return _flat(yy[inside], xx[inside], width)


class SnakeCanvas:
    """The occupancy mask of one image plus snake growth on it.

    ``occ[flat(y + pad, x + pad)]`` is True where a paddle centre line may not go: outside the drawing area, and within
    ``clearance`` of a committed paddle or marker.
    """

    def __init__(self, geometry: SnakeGeometry) -> None:
        g = self.g = geometry
        self.t = _tables(geometry)
        self.pad, self.width = g.pad, g.width
        self._offset = g.pad + 0.5  # canvas coordinate -> mask index, rounding by truncation
        mask = np.ones((g.width, g.width), dtype=bool)
        lo, hi = g.pad + g.border, g.pad + g.side - g.border
        mask[lo:hi, lo:hi] = False
        self.occ = mask.reshape(-1)  # flat view

    def _base(self, y: float, x: float) -> int:
        return int(y + self._offset) * self.width + int(x + self._offset)

    def is_free(self, y: float, x: float) -> bool:
        """True if the canvas point (y, x) is free (points outside the canvas are never free)."""
        lo, hi = -self.pad, self.g.side + self.pad - 1
        if not (lo < y < hi and lo < x < hi):
            return False
        return not self.occ[self._base(y, x)]

    def random_free_points(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """The free ones among ``n`` uniformly drawn canvas points ``[k, 2]`` (y, x)."""
        lo, hi = self.g.border, self.g.side - 1 - self.g.border
        pts = rng.uniform(lo, hi, size=(n, 2))
        idx = (pts + self._offset).astype(np.int64) @ np.array([self.width, 1])
        return pts[~self.occ[idx]]

    def block_disc(self, y: float, x: float, radius: float) -> None:
        """Mark every mask pixel within ``radius`` of the canvas point (y, x) as occupied (markers)."""
        self.occ[self._base(y, x) + _disc(radius, self.width)] = True

    def grow(self, rng: np.random.Generator, start: np.ndarray, n_paddles: int) -> np.ndarray | None:
        """Grow a snake of ``n_paddles`` from ``start`` in a random direction; return its segments ``[n, 4]``.

        Each candidate (gap + paddle) must be free; paddle ``k`` is committed to the mask right after paddle
        ``k + 1`` is placed, so it never blocks its own successor (turns are < 90 degrees, so the successor cannot
        fold back onto it) but blocks everything after.  At a dead end the previous paddle is re-drawn from its
        remaining candidates (at most ``BACKTRACKS`` times per snake); if that does not help, the mask is restored
        and ``None`` returned.
        """
        t, occ, length, margin = self.t, self.occ, self.g.length, self.g.margin
        unit, turns, step, weights, capsule = t.unit_list, t.turn_list, t.step, t.weights, t.capsule
        n_dirs = len(unit)
        y, x = float(start[0]), float(start[1])
        d = int(rng.integers(n_dirs))
        if occ[self._base(y, x) + t.first[d]].any():
            return None
        backup = occ.copy()
        sin, cos = unit[d]
        segments = np.empty((n_paddles, 4))
        segments[0] = (y, x, y + length * sin, x + length * cos)
        dirs, bases, chosen = [d] * n_paddles, [self._base(y, x)] * n_paddles, [0] * n_paddles
        options: list[np.ndarray | None] = [None] * n_paddles  # candidate weights [K] of paddle k (kept to backtrack)
        draws = rng.random(n_paddles + BACKTRACKS).tolist()
        any_blocked = np.logical_or.reduce
        k, backtracks = 1, 0
        while k < n_paddles:
            w = options[k]
            if w is None:
                end = self._base(float(segments[k - 1, 2]), float(segments[k - 1, 3]))
                w = options[k] = weights * ~any_blocked(occ[end + step[dirs[k - 1]]], axis=1)
            cumulative = w.cumsum()
            total = float(cumulative[-1])
            if total <= 0:  # dead end
                if k < 2 or backtracks >= BACKTRACKS:
                    occ[:] = backup
                    return None
                backtracks += 1
                options[k] = None
                k -= 1
                options[k][chosen[k]] = 0.0  # type: ignore[index]  # re-draw paddle k among the other candidates
                continue
            j = min(int(cumulative.searchsorted(draws[k + backtracks] * total, side="right")), len(turns) - 1)
            d = (dirs[k - 1] + turns[j]) % n_dirs
            sin, cos = unit[d]
            y, x = float(segments[k - 1, 2]) + margin * sin, float(segments[k - 1, 3]) + margin * cos
            segments[k] = (y, x, y + length * sin, x + length * cos)
            dirs[k], bases[k], chosen[k] = d, self._base(y, x), j
            occ[bases[k - 1] + capsule[dirs[k - 1]]] = True  # commit the previous paddle
            k += 1
        occ[bases[-1] + capsule[dirs[-1]]] = True
        return segments


def distance_to_segments(y: float, x: float, segments: np.ndarray) -> float:
    """Smallest distance from the point (y, x) to the segments ``[M, 4]`` (y0, x0, y1, x1)."""
    p0, d = segments[:, :2], segments[:, 2:] - segments[:, :2]
    rel = np.array([y, x]) - p0  # [M, 2]
    t = np.clip((rel * d).sum(1) / np.maximum((d * d).sum(1), 1e-9), 0.0, 1.0)
    return float(np.sqrt(((rel - t[:, None] * d) ** 2).sum(1).min()))
