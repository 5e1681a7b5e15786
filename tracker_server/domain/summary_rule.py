"""Summaries that follow the read rule: when a flush can add to them, when they must be
recomputed, and the recomputation (numpy only).

A run's summary of a key (``run_metric_summary``) equals an aggregate over the points a
series read returns (``domain.series.resolve``, per rank, then all ranks together):
count, first step, the last point (highest attempt, then step, then later write), and
the NaN-ignoring min and max (the earlier write on a tie). "Write order" is the order
of the stored points: chunk_id, then position in the chunk.

Most flushes only append: every new point of a (run, key, rank) has a step above all
that rank's visible points of its attempt, and hides nothing. Then the summary is the
old one merged with the flush's delta (``domain.chunking``), as fast as ever. A flush
that changes which attempt a step belongs to — the first flush of a resumed attempt
whose steps overlap the previous attempt's, points of an attempt older than the latest,
an attempt's first step going lower — makes the store recompute that (run, key) from
its chunks in the same transaction: it happens about once per resume.

A flush that rewrites steps of the latest attempt (a step logged again, steps going
backwards) hides only earlier writes of that attempt. Recomputing on every such flush
would make a job that logs many points per step (``step=epoch``) cost a read of the
whole series per flush, so the delta is merged (its last value is exact; count, min
and max may still include overwritten points) and the summary is marked stale; a
background pass (``storage.summary_repair``) recomputes stale summaries, pacing itself
by their cost.

To tell the two apart without reading chunks, the store keeps a *head* per
(run, key, rank): its latest attempt and that attempt's smallest and largest step.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np

from tracker_server.domain.chunking import ChunkSet, SummarySet
from tracker_server.domain.series import Chunks, resolve

SeriesKey = tuple[uuid.UUID, int, int]
"""(run_id, key_id, rank)."""
SummaryKey = tuple[uuid.UUID, int]
"""(run_id, key_id)."""


@dataclass(frozen=True)
class Span:
    """The points of one (run, key, rank, attempt) in one flush."""

    attempt: int
    first_step: int
    last_step: int
    increasing: bool
    """Steps strictly increase in write order."""


@dataclass(frozen=True)
class Head:
    """The latest attempt of a (run, key, rank) and that attempt's step range."""

    attempt: int
    first_step: int
    last_step: int


def flush_spans(chunks: ChunkSet) -> dict[SeriesKey, list[Span]]:
    """Per (run, key, rank): the spans of a flush's chunk rows, by attempt — the rule's
    reference form, one row at a time (the store uses ``summary_plan``, vectorised, and
    a unit test holds the two equal)."""
    steps = chunks.steps
    starts = chunks.starts
    ends = starts + chunks.n
    # Strictly increasing inside each row: no non-positive difference within a row.
    rises = np.r_[True, steps[1:] > steps[:-1]]
    bad = np.flatnonzero(~rises)
    row_of_bad = np.searchsorted(starts, bad, side="right") - 1
    row_ok = np.ones(chunks.rows, dtype=bool)
    row_ok[row_of_bad[bad != starts[row_of_bad]]] = False
    out: dict[SeriesKey, dict[int, Span]] = {}
    last_point: dict[tuple[SeriesKey, int], int] = {}
    for r in range(chunks.rows):
        key = (chunks.run_ids[r], int(chunks.key_ids[r]), int(chunks.ranks[r]))
        attempt = int(chunks.attempts[r])
        first, last = int(chunks.first_steps[r]), int(chunks.last_steps[r])
        ok = bool(row_ok[r])
        # A series split over several rows: the next row must go on above the last point.
        prev = last_point.get((key, attempt))
        if prev is not None and int(steps[starts[r]]) <= prev:
            ok = False
        last_point[(key, attempt)] = int(steps[ends[r] - 1])
        spans = out.setdefault(key, {})
        old = spans.get(attempt)
        if old is not None:
            first, last = min(first, old.first_step), max(last, old.last_step)
            ok = ok and old.increasing
        spans[attempt] = Span(attempt, first, last, ok)
    return {k: [v[a] for a in sorted(v)] for k, v in out.items()}


@dataclass(frozen=True)
class HeadPlan:
    """What a flush does to the summaries it touches."""

    recompute: set[SummaryKey]
    """Recompute now: the flush changes which attempt a step belongs to."""
    stale: set[SummaryKey]
    """Merge the delta, then recompute later: the flush rewrites steps of the head
    attempt (only earlier writes of that attempt are hidden; the last value is right)."""
    heads: dict[SeriesKey, Head]
    """The heads the flush leaves (changed ones only)."""


def plan_heads(spans: dict[SeriesKey, list[Span]], heads: dict[SeriesKey, Head]) -> HeadPlan:
    """Classify a flush's (run, key)s; ``heads`` holds the current head of every series
    in ``spans`` that has one."""
    recompute: set[SummaryKey] = set()
    stale: set[SummaryKey] = set()
    changed: dict[SeriesKey, Head] = {}
    for key, flushed in spans.items():
        head = heads.get(key)
        # Several attempts at once, or an attempt older than the head: which attempt a
        # step belongs to changes.
        moves = len(flushed) > 1
        rewrites = False
        for span in flushed:
            if head is None:
                rewrites = rewrites or not span.increasing
                head = Head(span.attempt, span.first_step, span.last_step)
            elif span.attempt < head.attempt:
                moves = True
            elif span.attempt == head.attempt:
                # A lower first step hides more of the older attempts.
                moves = moves or span.first_step < head.first_step
                rewrites = (rewrites or not span.increasing
                            or span.first_step <= head.last_step)
                head = Head(head.attempt, min(head.first_step, span.first_step),
                            max(head.last_step, span.last_step))
            else:
                # A new attempt above every visible step of this rank hides nothing
                # (older attempts' visible points all lie below the head's range).
                moves = moves or span.first_step <= head.last_step
                rewrites = rewrites or not span.increasing
                head = Head(span.attempt, span.first_step, span.last_step)
        if moves:
            recompute.add((key[0], key[1]))
        elif rewrites:
            stale.add((key[0], key[1]))
        if head is not None and head != heads.get(key):
            changed[key] = head
    return HeadPlan(recompute, stale - recompute, changed)


def heads_of(chunks: Chunks) -> dict[int, Head]:
    """Per rank: the head of stored chunks of one (run, key) (for backfills and tests)."""
    out: dict[int, Head] = {}
    offsets = np.r_[0, np.cumsum(chunks.sizes)]
    for r in range(chunks.sizes.shape[0]):
        part = chunks.steps[offsets[r]:offsets[r + 1]]
        if not part.shape[0]:
            continue
        rank, attempt = int(chunks.ranks[r]), int(chunks.attempts[r])
        lo, hi = int(part.min()), int(part.max())
        head = out.get(rank)
        if head is None or attempt > head.attempt:
            out[rank] = Head(attempt, lo, hi)
        elif attempt == head.attempt:
            out[rank] = Head(attempt, min(lo, head.first_step), max(hi, head.last_step))
    return out


@dataclass(frozen=True)
class Recomputed:
    """A (run, key)'s summary from all its points (None fields: no non-NaN value)."""

    count: int
    first_step: int
    last_step: int
    last_value: float
    last_attempt: int
    last_wall_ns: int
    min_value: float | None
    min_step: int | None
    max_value: float | None
    max_step: int | None


def recompute(chunks: Chunks) -> Recomputed | None:
    """The summary of the points a series read of ``chunks`` (every chunk of one
    (run, key), every rank, read raw) returns; None when no point is visible."""
    n = int(chunks.steps.shape[0])
    if n == 0:
        return None
    offsets = np.r_[0, np.cumsum(chunks.sizes)]
    row_of = np.repeat(np.arange(chunks.sizes.shape[0]), chunks.sizes)
    starts: dict[tuple[int, int], int] = {}
    for r in range(chunks.sizes.shape[0]):
        if chunks.sizes[r]:
            key = (int(chunks.ranks[r]), int(chunks.attempts[r]))
            lo = int(chunks.steps[offsets[r]:offsets[r + 1]].min())
            starts[key] = min(lo, starts.get(key, lo))
    # Resolve point indexes instead of values: exactly the points a read keeps.
    tagged = Chunks(chunks.ranks, chunks.attempts, chunks.chunk_ids, chunks.sizes,
                    chunks.steps, np.arange(n, dtype=np.float64), chunks.wall_ns)
    series = resolve(tagged, starts)
    if not series:
        return None
    idx = np.concatenate([s.values for s in series]).astype(np.int64)
    steps = chunks.steps[idx]
    values = chunks.values[idx]
    attempts = chunks.attempts[row_of[idx]]
    chunk_ids = chunks.chunk_ids[row_of[idx]]
    positions = idx - offsets[row_of[idx]]
    # np.lexsort sorts by its last key first.
    last = int(np.lexsort((positions, chunk_ids, steps, attempts))[-1])
    finite = np.flatnonzero(~np.isnan(values))
    lo_i: int | None = None
    hi_i: int | None = None
    if finite.shape[0]:
        v = values[finite]
        lo_i = int(finite[np.lexsort((positions[finite], chunk_ids[finite], v))[0]])
        hi_i = int(finite[np.lexsort((positions[finite], chunk_ids[finite], -v))[0]])
    return Recomputed(
        count=int(idx.shape[0]),
        first_step=int(steps.min()),
        last_step=int(steps[last]),
        last_value=float(values[last]),
        last_attempt=int(attempts[last]),
        last_wall_ns=int(chunks.wall_ns[idx[last]]),
        min_value=None if lo_i is None else float(values[lo_i]),
        min_step=None if lo_i is None else int(steps[lo_i]),
        max_value=None if hi_i is None else float(values[hi_i]),
        max_step=None if hi_i is None else int(steps[hi_i]),
    )


def summary_set(rows: dict[SummaryKey, Recomputed]) -> SummarySet:
    """Recomputed summaries as the columns the store writes."""
    keys = sorted(rows, key=lambda k: (k[0].bytes, k[1]))
    got = [rows[k] for k in keys]
    return SummarySet(
        run_ids=[k[0] for k in keys],
        key_ids=np.array([k[1] for k in keys], dtype=np.int32),
        count=np.array([g.count for g in got], dtype=np.int64),
        first_step=np.array([g.first_step for g in got], dtype=np.int64),
        last_step=np.array([g.last_step for g in got], dtype=np.int64),
        last_value=np.array([g.last_value for g in got], dtype=np.float64),
        last_attempt=np.array([g.last_attempt for g in got], dtype=np.int32),
        last_wall_ns=np.array([g.last_wall_ns for g in got], dtype=np.int64),
        has_value=np.array([g.min_value is not None for g in got], dtype=np.bool_),
        min_value=np.array([0.0 if g.min_value is None else g.min_value for g in got],
                           dtype=np.float64),
        min_step=np.array([0 if g.min_step is None else g.min_step for g in got],
                          dtype=np.int64),
        max_value=np.array([0.0 if g.max_value is None else g.max_value for g in got],
                           dtype=np.float64),
        max_step=np.array([0 if g.max_step is None else g.max_step for g in got],
                          dtype=np.int64),
    )
