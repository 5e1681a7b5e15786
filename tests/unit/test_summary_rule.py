"""``domain.summary_rule``: a flush judged an append neither hides a stored point nor
loses one of its own, so merging its delta is exact; one judged a rewrite hides only
earlier writes of the same attempt (so its last value is exact and a later repair
fixes the rest); everything else is recomputed, and the recomputation summarises
exactly what a read resolves."""

from __future__ import annotations

import math
import uuid

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker_server.domain.chunking import build_chunks
from tracker_server.domain.points import PointBatch, WriterInfo, WriterKey
from tracker_server.domain.series import Chunks, resolve
from tracker_server.domain.summary_plan import HeadArrays, flush_series, plan_flush
from tracker_server.domain.summary_rule import (
    Head,
    flush_spans,
    heads_of,
    plan_heads,
    recompute,
)

RUN = uuid.UUID(int=3)
KEY = 5

# One flush: (rank, attempt, steps of that writer's batch), a few of them.
flush = st.lists(
    st.tuples(st.integers(0, 1), st.integers(0, 2),
              st.lists(st.integers(0, 30), min_size=1, max_size=6)),
    min_size=1, max_size=3,
)


def _batch(steps: list[int], tag0: int) -> PointBatch:
    n = len(steps)
    return PointBatch(
        seq=1, keys=["k"], key_index=np.zeros(n, np.uint32),
        steps=np.array(steps, np.int64),
        values=np.arange(tag0, tag0 + n, dtype=np.float64),  # a value names its point
        wall_ns=np.zeros(n, np.int64), table_ids=np.array([KEY], np.int32),
    )


def _visible(stored: Chunks) -> set[float]:
    if not stored.sizes.shape[0]:
        return set()
    starts: dict[tuple[int, int], int] = {}
    offsets = np.r_[0, np.cumsum(stored.sizes)]
    for r in range(stored.sizes.shape[0]):
        key = (int(stored.ranks[r]), int(stored.attempts[r]))
        lo = int(stored.steps[offsets[r]:offsets[r + 1]].min())
        starts[key] = min(lo, starts.get(key, lo))
    return {v for s in resolve(stored, starts) for v in s.values.tolist()}


def _owners(stored: Chunks | None) -> dict[tuple[int, int], int]:
    """(rank, step) -> attempt of the visible point."""
    if stored is None:
        return {}
    row_of = np.repeat(np.arange(stored.sizes.shape[0]), stored.sizes)
    out = {}
    for tag in _visible(stored):
        i = int(np.flatnonzero(stored.values == tag)[0])
        out[(int(stored.ranks[row_of[i]]), int(stored.steps[i]))] = int(
            stored.attempts[row_of[i]])
    return out


def _append(stored: Chunks | None, new: Chunks) -> Chunks:
    if stored is None:
        return new
    return Chunks(*(np.concatenate([a, b]) for a, b in zip(
        (stored.ranks, stored.attempts, stored.chunk_ids, stored.sizes, stored.steps,
         stored.values, stored.wall_ns),
        (new.ranks, new.attempts, new.chunk_ids, new.sizes, new.steps, new.values,
         new.wall_ns), strict=True)))


@settings(max_examples=300, deadline=None)
@given(flushes=st.lists(flush, min_size=1, max_size=5))
def test_appends_hide_nothing_and_recompute_matches_a_read(
        flushes: list[list[tuple[int, int, list[int]]]]) -> None:
    stored: Chunks | None = None
    tag = 0
    next_id = 1
    for batches in flushes:
        rows = []
        for rank, attempt, steps in batches:
            rows.append((WriterInfo(WriterKey(RUN, f"r{rank}a{attempt}"), rank, attempt),
                         _batch(steps, tag)))
            tag += len(steps)
        chunks, _ = build_chunks(rows)
        heads = {} if stored is None else {
            (RUN, KEY, rank): h for rank, h in heads_of(stored).items()}
        plan = plan_heads(flush_spans(chunks), heads)
        n = chunks.rows
        new = Chunks(
            ranks=chunks.ranks.astype(np.int64), attempts=chunks.attempts.astype(np.int64),
            chunk_ids=np.arange(next_id, next_id + n, dtype=np.int64),
            sizes=chunks.n.astype(np.int64), steps=chunks.steps, values=chunks.values,
            wall_ns=chunks.wall_ns)
        next_id += n
        before = _visible(stored) if stored is not None else set()
        owners_before = _owners(stored)
        stored = _append(stored, new)
        after = _visible(stored)
        flushed = set(chunks.values.tolist())
        if (RUN, KEY) not in plan.recompute | plan.stale:
            assert after == before | flushed
        elif (RUN, KEY) in plan.stale:
            # Only earlier writes of the same attempt are hidden: no step changes attempt.
            owners = _owners(stored)
            assert all(owners[k] == a for k, a in owners_before.items()), (owners_before,
                                                                          owners)
        got = recompute(stored)
        assert got is not None
        assert got.count == len(after)
        visible = np.array(sorted(after))
        lo = stored.values[np.isin(stored.values, visible)].min()
        assert got.min_value == lo  # values are tags: the smallest visible tag
        assert math.isfinite(got.last_value)


heads_st = st.dictionaries(st.tuples(st.integers(0, 1), st.integers(0, 1)),
                           st.tuples(st.integers(0, 2), st.integers(0, 30), st.integers(0, 30)),
                           max_size=4)


@settings(max_examples=300, deadline=None)
@given(batches=flush, stored=heads_st, keys=st.integers(1, 2))
def test_vectorised_plan_equals_the_reference_rule(
        batches: list[tuple[int, int, list[int]]],
        stored: dict[tuple[int, int], tuple[int, int, int]], keys: int) -> None:
    rows = []
    tag = 0
    for rank, attempt, steps in batches:
        b = _batch(steps, tag)
        if keys == 2:  # a second key of the same steps: two series per rank
            n = len(steps)
            b = PointBatch(1, ["k", "j"], np.r_[np.zeros(n), np.ones(n)].astype(np.uint32),
                           np.r_[b.steps, b.steps], np.r_[b.values, b.values + 0.5],
                           np.zeros(2 * n, np.int64), np.array([KEY, KEY + 1], np.int32))
        rows.append((WriterInfo(WriterKey(RUN, f"r{rank}a{attempt}"), rank, attempt), b))
        tag += len(steps)
    chunks, _ = build_chunks(rows)
    heads = {(RUN, key, rank): Head(a, min(f, last), max(f, last))
             for (rank, k), (a, f, last) in stored.items() for key in [KEY + k]}
    want = plan_heads(flush_spans(chunks), heads)
    series = flush_series(chunks)
    arrays = HeadArrays.empty(series.size)
    for i in range(series.size):
        head = heads.get((RUN, int(series.key_ids[i]), int(series.ranks[i])))
        if head is not None:
            arrays.exists[i] = True
            arrays.attempt[i], arrays.first_step[i], arrays.last_step[i] = (
                head.attempt, head.first_step, head.last_step)
    got = plan_flush(series, arrays)
    recompute = series.summary_keys(got.recompute)
    assert recompute == want.recompute
    assert series.summary_keys(got.stale) - recompute == want.stale
    new_heads = {(RUN, int(series.key_ids[i]), int(series.ranks[i])): Head(
        int(got.head.attempt[i]), int(got.head.first_step[i]), int(got.head.last_step[i]))
        for i in np.flatnonzero(got.head_changed).tolist()}
    assert new_heads == want.heads
