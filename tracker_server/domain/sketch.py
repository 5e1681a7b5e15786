"""Per-chunk min/max sketches: the rollup tier that downsampled reads use.

A chunk of ``n >= SKETCH_MIN_POINTS`` points whose steps strictly increase (the normal
case: one writer logging forward) gets a sketch: the chunk, in arrival order (which is
step order), is cut into consecutive sub-buckets of ``SKETCH_BUCKET_POINTS`` points, and
the sketch keeps, per sub-bucket, its minimum and maximum point, plus the chunk's first
and last point, deduplicated, in arrival order. About ``2 / B`` of the points.

Minimum and maximum use exactly the downsampler's rule (``domain.downsample``): NaN
counts as +inf for the minimum and -inf for the maximum, ties go to the earlier point.
So a sub-bucket of only NaN keeps its first point (a NaN: gaps stay visible), and the
first minimum / maximum of any range that is a union of whole sub-buckets is always in
the sketch (``series_query`` relies on this for its guarantees).

Chunks whose steps do not strictly increase (a step repeated or logged out of order
within one flush) get no sketch: the later-write-wins rule could hide a sketched point,
and sub-buckets would no longer be step intervals. They, and chunks below the size
threshold, are read raw.

Computed for a whole flush at once with numpy: every sub-bucket of every eligible chunk
becomes one row of a ``(sub-buckets, B)`` matrix (the last one padded with NaN, which
never wins over a real point), so the per-point work is a gather and two arg-reductions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]
IntpArray = npt.NDArray[np.intp]

SKETCH_MIN_POINTS = 512
"""Smallest chunk that gets a sketch (the compactor's "small chunk" bound too)."""

SKETCH_BUCKET_POINTS = 64
"""Points per sub-bucket (B). The sketch holds about 2/B of a chunk's points."""


@dataclass
class Sketches:
    """Sketches of the chunk rows of one flush.

    ``n[r]`` is the number of sketch points of row r, or -1 when the row has no sketch
    (stored as NULL); row r's points are ``steps[starts[r]:starts[r] + n[r]]``.
    """

    n: Int64Array
    starts: Int64Array
    steps: Int64Array
    values: Float64Array
    wall_ns: Int64Array

    @property
    def points(self) -> int:
        """Sketch points over all rows."""
        return int(self.steps.shape[0])

    @staticmethod
    def none(rows: int) -> Sketches:
        """No row has a sketch."""
        z = np.zeros(0, dtype=np.int64)
        return Sketches(np.full(rows, -1, dtype=np.int64), np.zeros(rows, dtype=np.int64), z,
                        np.zeros(0, dtype=np.float64), z)


def _strictly_increasing(steps: Int64Array, starts: Int64Array) -> npt.NDArray[np.bool_]:
    """Per chunk row: do its steps strictly increase (in arrival order)?"""
    ok = np.ones(starts.shape[0], dtype=np.bool_)
    if steps.shape[0] < 2:
        return ok
    # Position i + 1 breaks the order unless it starts a new chunk.
    bad = np.flatnonzero(steps[1:] <= steps[:-1]) + 1
    row = np.searchsorted(starts, bad, side="right") - 1
    ok[row[bad != starts[row]]] = False
    return ok


def sketch_positions(
    steps: Int64Array,
    values: Float64Array,
    starts: Int64Array,
    sizes: Int64Array,
    bucket: int = SKETCH_BUCKET_POINTS,
    min_points: int = SKETCH_MIN_POINTS,
) -> tuple[Int64Array, IntpArray]:
    """Sketch of every chunk row as positions into the flush's point arrays.

    Returns ``(n, positions)``: per row the sketch size (-1: no sketch), and the kept
    positions of all sketched rows, ascending (row after row, arrival order within).
    """
    eligible = (sizes >= min_points) & _strictly_increasing(steps, starts)
    rows = np.flatnonzero(eligible)
    counts = np.full(starts.shape[0], -1, dtype=np.int64)
    if rows.shape[0] == 0:
        return counts, np.zeros(0, dtype=np.intp)
    base, size = starts[rows], sizes[rows]
    per_row = -(-size // bucket)  # sub-buckets per row (ceil)
    padded = per_row * bucket
    slot0 = np.cumsum(padded) - padded  # first slot of each row in the matrix
    # Slot -> point position. Padding slots run into the next row's points (clipped at
    # the end); they are overwritten below before any reduction sees them.
    idx = np.arange(int(padded.sum()), dtype=np.int64)
    idx += np.repeat(base - slot0, padded)
    np.minimum(idx, steps.shape[0] - 1, out=idx)
    pads = padded - size
    pad_slots = np.repeat(slot0 + size, pads) + (
        np.arange(int(pads.sum()), dtype=np.int64) - np.repeat(np.cumsum(pads) - pads, pads))
    v = values[idx]
    if bool(np.isnan(v).any()):
        low = np.where(np.isnan(v), np.inf, v)
        high = np.where(np.isnan(v), -np.inf, v)
    else:  # the common case: no NaN to map, reuse the gathered copy (padding swapped)
        low = high = v
    low[pad_slots] = np.inf  # padding never wins over a real point (first occurrence)
    i_min = np.argmin(low.reshape(-1, bucket), axis=1)
    high[pad_slots] = -np.inf
    i_max = np.argmax(high.reshape(-1, bucket), axis=1)
    sub_base = idx[::bucket]
    i_min += sub_base
    i_max += sub_base
    keep = np.unique(np.concatenate([i_min, i_max, base, base + size - 1]))
    counts[rows] = np.searchsorted(keep, base + size) - np.searchsorted(keep, base)
    return counts, keep.astype(np.intp)


def build_sketches(
    steps: Int64Array,
    values: Float64Array,
    wall_ns: Int64Array,
    starts: Int64Array,
    sizes: Int64Array,
    bucket: int = SKETCH_BUCKET_POINTS,
    min_points: int = SKETCH_MIN_POINTS,
) -> Sketches:
    """Sketches of the chunk rows ``[starts[r], starts[r] + sizes[r])`` of a flush."""
    counts, keep = sketch_positions(steps, values, starts, sizes, bucket, min_points)
    offsets = np.cumsum(np.maximum(counts, 0)) - np.maximum(counts, 0)
    return Sketches(counts, offsets.astype(np.int64), steps[keep], values[keep], wall_ns[keep])
