"""Turn stored chunks into clean series (numpy only).

The duplicate-step rule, applied per (run, key, rank):

1. Attempts: a later attempt supersedes every point of earlier attempts whose step is
   >= the later attempt's first step (its smallest stored step for that key and rank).
   Superseded points stay in the table for audit but are never returned.
2. Within what remains, a step logged more than once keeps the last write: the higher
   chunk_id, and within one chunk the later position (chunks keep arrival order).

After resolution, steps are strictly increasing per rank.

A series may carry a band, ``low`` and ``high`` (one value per point): the mean across
ranks has the minimum and maximum across ranks at each step, and a downsampled series
has the minimum and maximum of the bucket each kept point stands for (of the band, when
there is one, so a downsampled mean still spans every rank's every point).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tracker_server.domain.downsample import envelope, reduction

Int64Array = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]
Float64Array = npt.NDArray[np.float64]

STEP_MIN = -(2**63)
STEP_MAX = 2**63 - 1


@dataclass(frozen=True)
class AttemptInfo:
    """Chunk statistics of one (rank, attempt) of a series."""

    rank: int
    attempt: int
    first_step: int
    chunks: int
    max_chunk_id: int
    points: int


def attempt_starts(infos: list[AttemptInfo]) -> dict[tuple[int, int], int]:
    """(rank, attempt) -> first step, as ``resolve`` wants it."""
    return {(i.rank, i.attempt): i.first_step for i in infos}


@dataclass
class Chunks:
    """Chunk rows of one (run, key), arrays concatenated in row order.

    A row read as its min/max sketch holds fewer points (``sizes``) than it stores:
    ``stored_n`` gives the stored count of every row (None: every row is read raw).
    """

    ranks: Int64Array
    attempts: Int64Array
    chunk_ids: Int64Array
    sizes: Int64Array
    steps: Int64Array
    values: Float64Array
    wall_ns: Int64Array
    stored_n: Int64Array | None = None

    def hidden_by_sketch(self, rank: int) -> int:
        """Points of ``rank`` that are stored but not read (sketched rows)."""
        if self.stored_n is None:
            return 0
        mine = self.ranks == rank
        return int((self.stored_n[mine] - self.sizes[mine]).sum())

    @staticmethod
    def empty() -> Chunks:
        """No chunks."""
        z = np.zeros(0, dtype=np.int64)
        return Chunks(z, z, z, z, z, np.zeros(0, dtype=np.float64), z)


@dataclass
class Series:
    """One resolved series; rank -1 for an aggregate across ranks. ``low`` / ``high``:
    the band around each point (see the module docstring), or None."""

    rank: int
    steps: Int64Array
    values: Float64Array
    wall_ns: Int64Array
    total_points: int = 0
    downsampled: bool = False
    low: Float64Array | None = None
    high: Float64Array | None = None

    def __post_init__(self) -> None:
        if not self.total_points:
            self.total_points = int(self.steps.shape[0])


def _cutoffs(attempt_starts: dict[tuple[int, int], int], rank: int, attempts: Int64Array
             ) -> Int64Array:
    """Per attempt in ``attempts``: the first step superseded by a later attempt."""
    known = sorted(a for (r, a) in attempt_starts if r == rank)
    out = np.full(attempts.shape[0], STEP_MAX, dtype=np.int64)
    for i, attempt in enumerate(attempts.tolist()):
        later = [attempt_starts[(rank, a)] for a in known if a > attempt]
        if later:
            out[i] = min(later)
    return out


def resolve(
    chunks: Chunks,
    attempt_starts: dict[tuple[int, int], int],
    start_step: int = STEP_MIN,
    end_step: int = STEP_MAX,
) -> list[Series]:
    """Per-rank series of the points in [start_step, end_step] (ascending rank).

    ``attempt_starts[(rank, attempt)]`` is the smallest step of that attempt over all
    its chunks, not only those in the range: supersession does not depend on the range.
    """
    if chunks.sizes.shape[0] == 0:
        return []
    offsets = np.r_[0, np.cumsum(chunks.sizes)]
    # Row order (rank, attempt, chunk_id): concatenation then equals write order per rank.
    order = np.lexsort((chunks.chunk_ids, chunks.attempts, chunks.ranks))
    out: list[Series] = []
    for rank in np.unique(chunks.ranks).tolist():
        rows = order[chunks.ranks[order] == rank]
        if bool(np.all(np.diff(rows) == 1)):
            # Rows arrive sorted from SQL: the rank's points are one contiguous slice.
            lo, hi = int(offsets[rows[0]]), int(offsets[rows[-1] + 1])
            steps, values, wall = chunks.steps[lo:hi], chunks.values[lo:hi], chunks.wall_ns[lo:hi]
        else:
            idx = np.concatenate([np.arange(offsets[r], offsets[r + 1]) for r in rows.tolist()])
            steps, values, wall = chunks.steps[idx], chunks.values[idx], chunks.wall_ns[idx]
        row_attempts = chunks.attempts[rows]
        keep = None
        # A later attempt hides steps even when none of its chunks is among these rows
        # (a zoomed or windowed read), so the test is against every known attempt.
        if any(r == rank and a > row_attempts[0] for r, a in attempt_starts):
            cut = np.repeat(_cutoffs(attempt_starts, rank, row_attempts), chunks.sizes[rows])
            keep = steps < cut
        if start_step > STEP_MIN or end_step < STEP_MAX:
            in_range = (steps >= start_step) & (steps <= end_step)
            keep = in_range if keep is None else keep & in_range
        if keep is not None and not bool(keep.all()):
            steps, values, wall = steps[keep], values[keep], wall[keep]
        if steps.shape[0] > 1 and not bool(np.all(steps[1:] > steps[:-1])):
            # Stable sort: among equal steps the later write stays last; keep that one.
            by_step = np.argsort(steps, kind="stable")
            s = steps[by_step]
            last = by_step[np.r_[s[1:] != s[:-1], True]]
            steps, values, wall = steps[last], values[last], wall[last]
        if steps.shape[0]:
            out.append(Series(int(rank), steps, values, wall))
    return out


def aggregate(series: list[Series], how: str) -> Series | None:
    """One series across ranks: per step the mean, min or max over the ranks that
    logged it. Mean propagates NaN; min/max ignore NaN unless all values are NaN.
    The wall time is the latest rank's."""
    if not series:
        return None
    steps = np.concatenate([s.steps for s in series])
    values = np.concatenate([s.values for s in series])
    wall = np.concatenate([s.wall_ns for s in series])
    order = np.argsort(steps, kind="stable")
    steps, values, wall = steps[order], values[order], wall[order]
    starts = np.flatnonzero(np.r_[True, steps[1:] != steps[:-1]])
    low = high = None
    if how == "mean":
        counts = np.diff(np.r_[starts, steps.shape[0]])
        agg = np.add.reduceat(values, starts) / counts
        low, high = np.fmin.reduceat(values, starts), np.fmax.reduceat(values, starts)
    elif how == "min":
        agg = np.fmin.reduceat(values, starts)
    else:
        agg = np.fmax.reduceat(values, starts)
    return Series(-1, steps[starts], agg, np.maximum.reduceat(wall, starts), low=low,
                  high=high)


def reduce_points(series: Series, max_points: int, method: str) -> Series:
    """Downsample ``series`` to at most ``max_points`` points with ``method``; every
    kept point gets the envelope (min and max) of its bucket as ``low`` / ``high``."""
    if series.steps.shape[0] <= max_points:
        return series
    cut = reduction(series.steps, series.values, max_points, method)
    low, high = envelope(series.values if series.low is None else series.low,
                         series.values if series.high is None else series.high, cut)
    i = cut.index
    return Series(series.rank, series.steps[i], series.values[i], series.wall_ns[i],
                  series.total_points, True, low, high)
