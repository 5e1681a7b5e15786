"""Which chunks a downsampled read may take from their min/max sketches.

A sketch (``domain.sketch``) keeps per sub-bucket of B points its first minimum and first
maximum, plus the chunk's first and last point. Reading it instead of the raw arrays is
safe — the first, last, minimum and maximum point of the requested range stay in the
point set the downsampler sees, and the duplicate rule gives the same answer — when:

1. the chunk lies entirely inside the requested step range (an edge chunk is read raw,
   so the range's first and last points are exact);
2. no later attempt of the same rank supersedes any of its steps (its last step is below
   the smallest first step of the later attempts);
3. its step span overlaps no other chunk of the rank that the read uses, so none of its
   points is replaced by, or replaces, a write of the same step elsewhere;
4. the rank holds enough points in the range for the downsampled output to be far
   coarser than the sketch: at least ``SKETCH_RATIO * B`` points per requested output
   point (see ``sketch_worthwhile``).

Conditions 1-3 make every point of a sketched chunk survive resolution untouched, and the
chunk's points form whole sub-buckets of the range, so the range's first minimum and
maximum, wherever they fall, are sketch points or raw points. The plan depends only on
chunk metadata and the request, never on the read cache, so reads stay deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tracker_server.domain.series import STEP_MAX, AttemptInfo
from tracker_server.domain.sketch import SKETCH_BUCKET_POINTS

SKETCH_RATIO = 2
"""Points in range per output point, in units of B, from which sketches are read.

The sketch holds 2 points per B raw points, so N >= 2·B·M points in range give the
downsampler at least 4 candidate points per output point: the MinMax pre-selection
ratio at which MinMaxLTTB (Van Der Donckt et al., 2023) matches LTTB on the raw data,
and for minmax buckets (2 output points each) at least 4 whole sub-buckets per bucket.
"""


@dataclass(frozen=True)
class ChunkMeta:
    """Metadata of one stored chunk (no arrays)."""

    rank: int
    attempt: int
    chunk_id: int
    first_step: int
    last_step: int
    n: int
    has_sketch: bool


@dataclass(frozen=True)
class ChunkRead:
    """One chunk to fetch, raw or as its sketch."""

    rank: int
    attempt: int
    chunk_id: int
    n: int
    sketch: bool


def sketch_worthwhile(points: float, max_points: int,
                      bucket: int = SKETCH_BUCKET_POINTS) -> bool:
    """Are ``points`` in range enough to downsample to ``max_points`` from sketches?"""
    return points >= SKETCH_RATIO * bucket * max_points


def _cutoffs(infos: list[AttemptInfo]) -> dict[tuple[int, int], int]:
    """(rank, attempt) -> first step hidden by a later attempt (STEP_MAX: none)."""
    out: dict[tuple[int, int], int] = {}
    for info in infos:
        later = [i.first_step for i in infos if i.rank == info.rank and i.attempt > info.attempt]
        out[(info.rank, info.attempt)] = min(later) if later else STEP_MAX
    return out


def _overlapping(first: npt.NDArray[np.int64], last: npt.NDArray[np.int64]
                 ) -> npt.NDArray[np.bool_]:
    """Per interval [first, last] (any order): does it intersect another one?"""
    order = np.lexsort((last, first))
    f, l_ = first[order], last[order]
    before = np.maximum.accumulate(np.r_[np.iinfo(np.int64).min, l_[:-1]].astype(np.int64))
    after = np.r_[f[1:], np.iinfo(np.int64).max].astype(np.int64)
    hit = (before >= f) | (after <= l_)
    out: npt.NDArray[np.bool_] = np.empty_like(hit)
    out[order] = hit
    return out


def _in_range_estimate(first: int, last: int, n: int, lo: int, hi: int) -> float:
    """Points of a chunk inside [lo, hi], pro rata by step span (exact when inside)."""
    if lo > hi:
        return 0.0
    if first >= lo and last <= hi:
        return float(n)
    return n * (float(hi) - float(lo) + 1.0) / (float(last) - float(first) + 1.0)


def plan_reads(
    infos: list[AttemptInfo],
    metas: list[ChunkMeta],
    start_step: int,
    end_step: int,
    max_points: int,
    bucket: int = SKETCH_BUCKET_POINTS,
) -> list[ChunkRead] | None:
    """Chunks to fetch for a downsampled read of [start_step, end_step], with the ones
    to take as sketches marked; None when no chunk qualifies (read everything raw).

    ``infos`` cover every chunk of the series (attempt boundaries do not depend on the
    range); ``metas`` are the chunks overlapping the range, of the requested rank(s).
    Chunks whose every point is superseded by a later attempt are left out. ``bucket``
    is the sketches' sub-bucket size B.
    """
    cut = _cutoffs(infos)
    live = [m for m in metas if m.first_step < cut.get((m.rank, m.attempt), STEP_MAX)]
    if not live:
        return None
    eff_last = [min(m.last_step, cut.get((m.rank, m.attempt), STEP_MAX) - 1) for m in live]
    ranks = np.array([m.rank for m in live], dtype=np.int64)
    first = np.array([m.first_step for m in live], dtype=np.int64)
    last = np.array(eff_last, dtype=np.int64)
    overlap = np.zeros(len(live), dtype=np.bool_)
    worthwhile: dict[int, bool] = {}
    for rank in np.unique(ranks).tolist():
        sel = np.flatnonzero(ranks == rank)
        overlap[sel] = _overlapping(first[sel], last[sel])
        points = sum(_in_range_estimate(live[i].first_step, live[i].last_step, live[i].n,
                                        max(start_step, live[i].first_step),
                                        min(end_step, eff_last[i])) for i in sel.tolist())
        worthwhile[rank] = sketch_worthwhile(points, max_points, bucket)
    reads = [
        ChunkRead(m.rank, m.attempt, m.chunk_id, m.n,
                  m.has_sketch and worthwhile[m.rank] and not bool(overlap[i])
                  and m.last_step == eff_last[i]
                  and m.first_step >= start_step and m.last_step <= end_step)
        for i, m in enumerate(live)
    ]
    if not any(r.sketch for r in reads):
        return None
    return reads
