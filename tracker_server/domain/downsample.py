"""Deterministic downsampling of one series (numpy only).

Both methods return sorted indices into the input, at most ``max_points`` of them,
and always include the first point, the last point, the minimum and the maximum
(the first occurrence of each; NaN is ignored unless every value is NaN). The same
input always gives the same output: no randomness, ties go to the earlier point.
Zooming re-samples: callers cut the step range first, then downsample.

Each method also says which bucket every kept point stands for (``Reduction.starts``),
so ``envelope`` can give every kept point the minimum and maximum of its bucket: a
chart then draws the band the dropped points span, not only the line through the kept
ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.intp]

MIN_POINTS = 4


@dataclass(frozen=True)
class Reduction:
    """What a downsampling kept: ``index`` (sorted positions into the input) and the
    buckets the input was cut into (``starts``: sorted, distinct start positions, the
    first 0). Every kept point stands for the bucket it lies in."""

    index: IndexArray
    starts: IndexArray


def envelope(low: Float64Array, high: Float64Array, reduction: Reduction
             ) -> tuple[Float64Array, Float64Array]:
    """Per kept point, the minimum of ``low`` and the maximum of ``high`` over its
    bucket (NaN ignored unless the whole bucket is NaN). ``low`` and ``high`` are the
    series' values, or for an aggregate the per-step minimum and maximum across ranks."""
    bucket_low = np.fmin.reduceat(low, reduction.starts)
    bucket_high = np.fmax.reduceat(high, reduction.starts)
    which = np.searchsorted(reduction.starts, reduction.index, side="right") - 1
    return bucket_low[which], bucket_high[which]


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
    return minmax_reduction(steps, values, max_points).index


def _everything(n: int) -> Reduction:
    every = np.arange(n, dtype=np.intp)
    return Reduction(every, every)


def minmax_reduction(steps: Int64Array, values: Float64Array, max_points: int) -> Reduction:
    """``minmax`` with its buckets (the equal-width step buckets)."""
    n = steps.shape[0]
    if n <= max_points:
        return _everything(n)
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
    return Reduction(keep.astype(np.intp), starts)


def lttb(steps: Int64Array, values: Float64Array, max_points: int) -> IndexArray:
    """Largest-Triangle-Three-Buckets over index buckets, plus first/last/min/max.

    LTTB is sequential by nature (each choice depends on the previous one), so the loop
    runs once per output point over numpy slices: ~1,000 iterations for a chart.
    """
    return lttb_reduction(steps, values, max_points).index


def lttb_reduction(steps: Int64Array, values: Float64Array, max_points: int) -> Reduction:
    """``lttb`` with its buckets: the first point, LTTB's index buckets, the last point."""
    n = steps.shape[0]
    if n <= max_points:
        return _everything(n)
    i_min, i_max = extremes(values)
    out_points = max_points - 2  # room for the min and max if LTTB misses them
    if out_points < 3:  # no middle bucket fits: the four points that must be kept
        keep = np.unique(np.r_[0, n - 1, i_min, i_max]).astype(np.intp)
        return Reduction(keep, keep)  # each kept point stands for the run up to the next
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
    starts = np.unique(np.r_[0, edges, n - 1]).astype(np.intp)
    return Reduction(keep.astype(np.intp), starts)


def downsample(
    steps: Int64Array, values: Float64Array, max_points: int, method: str
) -> IndexArray:
    """Indices to keep for ``method`` ("minmax" or "lttb")."""
    return reduction(steps, values, max_points, method).index


def reduction(steps: Int64Array, values: Float64Array, max_points: int, method: str
              ) -> Reduction:
    """``downsample`` with the buckets the kept points stand for."""
    if method == "lttb":
        return lttb_reduction(steps, values, max_points)
    return minmax_reduction(steps, values, max_points)
