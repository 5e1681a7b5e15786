"""Deterministic downsampling of one series (numpy only).

Both methods return sorted indices into the input, at most ``max_points`` of them,
and always include the first point, the last point, the minimum and the maximum
(the first occurrence of each; NaN is ignored unless every value is NaN). The same
input always gives the same output: no randomness, ties go to the earlier point.
Zooming re-samples: callers cut the step range first, then downsample.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]

MIN_POINTS = 4


def extremes(values: Float64Array) -> tuple[int, int]:
    """Index of the first minimum and the first maximum, NaN ignored (0 if all NaN)."""
    low = np.where(np.isnan(values), np.inf, values)
    high = np.where(np.isnan(values), -np.inf, values)
    return int(np.argmin(low)), int(np.argmax(high))


def _bucket_starts(steps: Int64Array, buckets: int) -> IndexArray:
    """Start offsets of the non-empty equal-width step buckets (steps sorted)."""
    first, last = float(steps[0]), float(steps[-1])
    span = last - first
    if span <= 0:
        return np.zeros(1, dtype=np.intp)
    # float64 keeps huge step ranges free of int64 overflow; widths stay monotonic.
    edges = first + span * (np.arange(1, buckets, dtype=np.float64) / buckets)
    bounds = np.searchsorted(steps.astype(np.float64), edges, side="left")
    starts: IndexArray = np.unique(np.r_[0, bounds]).astype(np.intp)
    kept: IndexArray = starts[starts < steps.shape[0]]
    return kept


def _first_match(mask: npt.NDArray[np.bool_], starts: IndexArray) -> IndexArray:
    """For each segment beginning at ``starts``, the first index where ``mask`` holds.
    Every segment must contain a match."""
    hits = np.flatnonzero(mask)
    return hits[np.searchsorted(hits, starts, side="left")].astype(np.intp)


def minmax(steps: Int64Array, values: Float64Array, max_points: int) -> IndexArray:
    """Equal-width step buckets; keeps each bucket's min and max point."""
    n = steps.shape[0]
    if n <= max_points:
        return np.arange(n, dtype=np.intp)
    buckets = max(1, (max_points - 2) // 2)
    starts = _bucket_starts(steps, buckets)
    low = np.where(np.isnan(values), np.inf, values)
    high = np.where(np.isnan(values), -np.inf, values)
    sizes = np.diff(np.r_[starts, n])
    bmin = np.minimum.reduceat(low, starts)
    bmax = np.maximum.reduceat(high, starts)
    i_min = _first_match(low == np.repeat(bmin, sizes), starts)
    i_max = _first_match(high == np.repeat(bmax, sizes), starts)
    keep = np.unique(np.r_[0, n - 1, i_min, i_max])
    return keep.astype(np.intp)


def lttb(steps: Int64Array, values: Float64Array, max_points: int) -> IndexArray:
    """Largest-Triangle-Three-Buckets over index buckets, plus first/last/min/max.

    LTTB is sequential by nature (each choice depends on the previous one), so the loop
    runs once per output point over numpy slices: ~1,000 iterations for a chart.
    """
    n = steps.shape[0]
    if n <= max_points:
        return np.arange(n, dtype=np.intp)
    i_min, i_max = extremes(values)
    out_points = max_points - 2  # room for the min and max if LTTB misses them
    if out_points < 3:  # no middle bucket fits: the four points that must be kept
        return np.unique(np.r_[0, n - 1, i_min, i_max]).astype(np.intp)
    x = steps.astype(np.float64)
    # Non-finite values make every triangle area NaN; give them a neutral height so the
    # choice stays deterministic (the extremes are added back explicitly).
    finite = np.isfinite(values)
    y = np.where(finite, values, np.nanmean(np.where(finite, values, np.nan)) if finite.any()
                 else 0.0)
    edges = np.linspace(1, n - 1, out_points - 1).astype(np.intp)
    chosen = np.empty(out_points, dtype=np.intp)
    chosen[0] = 0
    prev = 0
    for b in range(out_points - 2):
        lo, hi = edges[b], edges[b + 1]
        nxt_lo, nxt_hi = edges[b + 1], edges[b + 2] if b + 2 < len(edges) else n
        if nxt_hi <= nxt_lo:
            nxt_hi = nxt_lo + 1
        avg_x = x[nxt_lo:nxt_hi].mean()
        avg_y = y[nxt_lo:nxt_hi].mean()
        if hi <= lo:
            chosen[b + 1] = lo
            prev = int(lo)
            continue
        area = np.abs(
            (x[prev] - avg_x) * (y[lo:hi] - y[prev]) - (x[prev] - x[lo:hi]) * (avg_y - y[prev])
        )
        prev = int(lo + np.argmax(area))
        chosen[b + 1] = prev
    chosen[-1] = n - 1
    keep = np.unique(np.r_[chosen, i_min, i_max])
    return keep.astype(np.intp)


def downsample(
    steps: Int64Array, values: Float64Array, max_points: int, method: str
) -> IndexArray:
    """Indices to keep for ``method`` ("minmax" or "lttb")."""
    if method == "lttb":
        return lttb(steps, values, max_points)
    return minmax(steps, values, max_points)
