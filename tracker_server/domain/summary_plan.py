"""The flush-time half of ``domain.summary_rule``, vectorised: which summaries of a flush
merge their delta, which are marked stale, which are recomputed, and the series heads
the flush leaves.

A flush of a low-frequency workload has thousands of chunk rows (a point or two per
(run, key)); classifying them one Python object at a time cost more than building the
chunks. Here it is a handful of numpy passes over the rows and series. The rare series
with several attempts in one flush go through the reference rule
(``summary_rule.plan_heads``), which the unit tests also compare this against.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tracker_server.domain.chunking import ChunkSet
from tracker_server.domain.summary_rule import Head, Span, SummaryKey, plan_heads

Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class FlushSeries:
    """The (run, key, rank) series of one flush (run as an index into ``runs``) and,
    for those with one attempt in the flush, that attempt's span."""

    runs: list[uuid.UUID]
    run_idx: Int64Array
    key_ids: Int64Array
    ranks: Int64Array
    attempt: Int64Array
    first_step: Int64Array
    last_step: Int64Array
    increasing: BoolArray
    multi: dict[int, list[Span]]
    """Series index -> its spans by attempt, for series with several attempts."""

    @property
    def size(self) -> int:
        """Number of series."""
        return int(self.run_idx.shape[0])

    def summary_keys(self, mask: BoolArray) -> set[SummaryKey]:
        """(run, key) of the series in ``mask``."""
        return {(self.runs[int(r)], int(k))
                for r, k in zip(self.run_idx[mask].tolist(), self.key_ids[mask].tolist(),
                                strict=True)}


def flush_series(chunks: ChunkSet) -> FlushSeries:
    """The series of a flush's chunk rows (``build_chunks`` output: the rows of one
    (run, rank, attempt, key) are consecutive, in write order)."""
    runs: dict[uuid.UUID, int] = {}
    run_idx = np.fromiter((runs.setdefault(r, len(runs)) for r in chunks.run_ids),
                          dtype=np.int64, count=chunks.rows)
    key_ids = chunks.key_ids.astype(np.int64)
    ranks = chunks.ranks.astype(np.int64)
    attempts = chunks.attempts.astype(np.int64)
    steps, starts = chunks.steps, chunks.starts
    ends = starts + chunks.n
    # Strictly increasing inside each row.
    bad = np.flatnonzero(np.r_[False, steps[1:] <= steps[:-1]])
    row_of_bad = np.searchsorted(starts, bad, side="right") - 1
    row_ok = np.ones(chunks.rows, dtype=bool)
    row_ok[row_of_bad[bad != starts[row_of_bad]]] = False
    # Rows continuing the previous row's group (a long series cut into pieces) must go
    # on above its last point.
    same = ((run_idx[1:] == run_idx[:-1]) & (key_ids[1:] == key_ids[:-1])
            & (ranks[1:] == ranks[:-1]) & (attempts[1:] == attempts[:-1]))
    goes_on = steps[starts[1:]] > steps[ends[:-1] - 1]
    row_ok[1:] &= ~same | goes_on
    g_starts = np.flatnonzero(np.r_[True, ~same])
    g_run, g_key, g_rank, g_att = (a[g_starts] for a in (run_idx, key_ids, ranks, attempts))
    g_first = np.minimum.reduceat(chunks.first_steps, g_starts)
    g_last = np.maximum.reduceat(chunks.last_steps, g_starts)
    g_inc = np.logical_and.reduceat(row_ok, g_starts)
    # Series: groups by (run, key, rank); attempts of one series need not be adjacent.
    order = np.lexsort((g_att, g_rank, g_key, g_run))
    o_run, o_key, o_rank = g_run[order], g_key[order], g_rank[order]
    s_starts = np.flatnonzero(np.r_[True, (o_run[1:] != o_run[:-1]) | (o_key[1:] != o_key[:-1])
                                    | (o_rank[1:] != o_rank[:-1])])
    sizes = np.diff(np.r_[s_starts, order.shape[0]])
    multi: dict[int, list[Span]] = {}
    for s in np.flatnonzero(sizes > 1).tolist():
        members = order[s_starts[s]:s_starts[s] + sizes[s]]
        multi[s] = [Span(int(g_att[g]), int(g_first[g]), int(g_last[g]), bool(g_inc[g]))
                    for g in members.tolist()]
    first = order[s_starts]  # for single-group series, their group
    return FlushSeries(
        runs=list(runs), run_idx=o_run[s_starts], key_ids=o_key[s_starts],
        ranks=o_rank[s_starts], attempt=g_att[first], first_step=g_first[first],
        last_step=g_last[first], increasing=g_inc[first], multi=multi,
    )


@dataclass
class HeadArrays:
    """Current heads aligned with a flush's series (``exists`` False: no head yet)."""

    exists: BoolArray
    attempt: Int64Array
    first_step: Int64Array
    last_step: Int64Array

    @staticmethod
    def empty(n: int) -> HeadArrays:
        """No series has a head."""
        z = np.zeros(n, dtype=np.int64)
        return HeadArrays(np.zeros(n, dtype=bool), z, z.copy(), z.copy())


@dataclass
class FlushPlan:
    """Per series of the flush: recompute, stale, and its new head (where changed)."""

    recompute: BoolArray
    stale: BoolArray
    head_changed: BoolArray
    head: HeadArrays


def plan_flush(series: FlushSeries, heads: HeadArrays) -> FlushPlan:
    """``summary_rule.plan_heads`` over arrays (see there for the rule)."""
    has, h_att, h_first, h_last = heads.exists, heads.attempt, heads.first_step, heads.last_step
    att, first, last, inc = series.attempt, series.first_step, series.last_step, series.increasing
    older = has & (att < h_att)
    same = has & (att == h_att)
    newer = has & (att > h_att)
    moves = older | (same & (first < h_first)) | (newer & (first <= h_last))
    rewrites = ~inc | (same & (first <= h_last))
    new_att = np.where(older, h_att, att)
    new_first = np.where(older, h_first, np.where(same, np.minimum(first, h_first), first))
    new_last = np.where(older, h_last, np.where(same, np.maximum(last, h_last), last))
    recompute = moves.copy()
    stale = rewrites & ~moves
    for s, spans in series.multi.items():
        key = (series.runs[int(series.run_idx[s])], int(series.key_ids[s]), int(series.ranks[s]))
        old = {key: Head(int(h_att[s]), int(h_first[s]), int(h_last[s]))} if has[s] else {}
        got = plan_heads({key: spans}, old)
        recompute[s] = bool(got.recompute)
        stale[s] = bool(got.stale)
        head = got.heads.get(key) or old[key]
        new_att[s], new_first[s], new_last[s] = head.attempt, head.first_step, head.last_step
    changed = ~has | (new_att != h_att) | (new_first != h_first) | (new_last != h_last)
    return FlushPlan(recompute, stale, changed, HeadArrays(np.ones_like(has), new_att,
                                                           new_first, new_last))
