"""The summary part of the flush transaction: series heads, summary deltas, and the
recomputation of the (run, key)s a flush may have changed beyond a delta.

See ``domain.summary_rule`` for the rule. Everything runs on the flush's connection,
inside its transaction, after the COPY of the flush's chunks (a recomputation reads
them back). The flush holds the advisory lock of every run it writes
(``storage.flush_locks``), so no other flush changes these rows or chunks meanwhile.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from psycopg import Connection

from tracker_server.domain.chunking import ChunkSet, SummarySet
from tracker_server.domain.series import Chunks
from tracker_server.domain.summary_plan import (
    FlushPlan,
    FlushSeries,
    HeadArrays,
    flush_series,
    plan_flush,
)
from tracker_server.domain.summary_rule import SummaryKey, recompute, summary_set
from tracker_server.storage.chunk_rows import decode_chunk_rows
from tracker_server.storage.numpy_arrays import use_numpy_arrays
from tracker_server.storage.pg_params import (
    BoolArray,
    Float8Array,
    Int4Array,
    Int8Array,
    UuidArray,
)

_HEADS_SQL = """
SELECT w.i, h.attempt, h.first_step, h.last_step
FROM unnest(%s::uuid[], %s::int[], %s::int[]) WITH ORDINALITY AS w(run_id, key_id, rank, i)
JOIN metric_series_heads h
  ON h.run_id = w.run_id AND h.key_id = w.key_id AND h.rank = w.rank
"""

_UPSERT_HEADS_SQL = """
INSERT INTO metric_series_heads AS h (run_id, key_id, rank, attempt, first_step, last_step)
SELECT * FROM unnest(%s::uuid[], %s::int[], %s::int[], %s::int[], %s::int8[], %s::int8[])
ORDER BY 1, 2, 3
ON CONFLICT (run_id, key_id, rank) DO UPDATE SET
    attempt = excluded.attempt, first_step = excluded.first_step,
    last_step = excluded.last_step
"""

_SUMMARY_ROWS = """
SELECT run_id, key_id, count, first_step, last_step, last_value, last_attempt, last_wall_ns,
       CASE WHEN has_value THEN min_value END, CASE WHEN has_value THEN min_step END,
       CASE WHEN has_value THEN max_value END, CASE WHEN has_value THEN max_step END
FROM unnest(
    %s::uuid[], %s::int[], %s::int8[], %s::int8[], %s::int8[], %s::float8[], %s::int[],
    %s::int8[], %s::bool[], %s::float8[], %s::int8[], %s::float8[], %s::int8[])
    AS d(run_id, key_id, count, first_step, last_step, last_value, last_attempt,
         last_wall_ns, has_value, min_value, min_step, max_value, max_step)
ORDER BY 1, 2  -- row-lock order, so concurrent flushes of one run cannot deadlock
"""

_SUMMARY_COLUMNS = """
    run_id, key_id, count, first_step, last_step, last_value, last_attempt, last_wall_ns,
    min_value, min_step, max_value, max_step"""

# Appends: merge the flush's delta. min/max ignore NaN (NULL when a key has only NaN so
# far); ties keep the earlier write. "last" is the point with the highest (attempt, step);
# a tie goes to the later write.
_SUMMARY_SQL = f"""
INSERT INTO run_metric_summary AS s ({_SUMMARY_COLUMNS})
{_SUMMARY_ROWS}
ON CONFLICT (run_id, key_id) DO UPDATE SET
    count = s.count + excluded.count,
    first_step = least(s.first_step, excluded.first_step),
    last_step = CASE WHEN (excluded.last_attempt, excluded.last_step)
                          >= (s.last_attempt, s.last_step)
                     THEN excluded.last_step ELSE s.last_step END,
    last_value = CASE WHEN (excluded.last_attempt, excluded.last_step)
                           >= (s.last_attempt, s.last_step)
                      THEN excluded.last_value ELSE s.last_value END,
    last_wall_ns = CASE WHEN (excluded.last_attempt, excluded.last_step)
                             >= (s.last_attempt, s.last_step)
                        THEN excluded.last_wall_ns ELSE s.last_wall_ns END,
    last_attempt = greatest(s.last_attempt, excluded.last_attempt),
    min_step = CASE WHEN s.min_value IS NULL OR excluded.min_value < s.min_value
                    THEN excluded.min_step ELSE s.min_step END,
    min_value = CASE WHEN s.min_value IS NULL OR excluded.min_value < s.min_value
                     THEN excluded.min_value ELSE s.min_value END,
    max_step = CASE WHEN s.max_value IS NULL OR excluded.max_value > s.max_value
                    THEN excluded.max_step ELSE s.max_step END,
    max_value = CASE WHEN s.max_value IS NULL OR excluded.max_value > s.max_value
                     THEN excluded.max_value ELSE s.max_value END
"""

_MARK_STALE_SQL = """
UPDATE run_metric_summary s SET stale = true
FROM unnest(%s::uuid[], %s::int[]) AS w(run_id, key_id)
WHERE s.run_id = w.run_id AND s.key_id = w.key_id
"""

# Recomputed: the new row replaces the old one.
_REPLACE_SQL = f"""
INSERT INTO run_metric_summary AS s ({_SUMMARY_COLUMNS})
{_SUMMARY_ROWS}
ON CONFLICT (run_id, key_id) DO UPDATE SET
    count = excluded.count, first_step = excluded.first_step,
    last_step = excluded.last_step, last_value = excluded.last_value,
    last_attempt = excluded.last_attempt, last_wall_ns = excluded.last_wall_ns,
    min_value = excluded.min_value, min_step = excluded.min_step,
    max_value = excluded.max_value, max_step = excluded.max_step, stale = false
"""

_SERIES_CHUNKS_SQL = """
SELECT c.run_id, c.key_id, c.rank, c.attempt, c.chunk_id, c.steps, c."values", c.wall_ns,
       c.payload
FROM metric_chunks c
JOIN unnest(%s::uuid[], %s::int[]) AS w(run_id, key_id)
  ON c.run_id = w.run_id AND c.key_id = w.key_id
ORDER BY c.run_id, c.key_id, c.rank, c.attempt, c.chunk_id
"""


def _params(s: SummarySet) -> tuple[Any, ...]:
    return (UuidArray.of(s.run_ids), Int4Array(s.key_ids), Int8Array(s.count),
            Int8Array(s.first_step), Int8Array(s.last_step), Float8Array(s.last_value),
            Int4Array(s.last_attempt), Int8Array(s.last_wall_ns), BoolArray(s.has_value),
            Float8Array(s.min_value), Int8Array(s.min_step), Float8Array(s.max_value),
            Int8Array(s.max_step))


def _subset(s: SummarySet, keep: np.ndarray[Any, Any]) -> SummarySet:
    return SummarySet(
        run_ids=[r for r, k in zip(s.run_ids, keep.tolist(), strict=True) if k],
        key_ids=s.key_ids[keep], count=s.count[keep], first_step=s.first_step[keep],
        last_step=s.last_step[keep], last_value=s.last_value[keep],
        last_attempt=s.last_attempt[keep], last_wall_ns=s.last_wall_ns[keep],
        has_value=s.has_value[keep], min_value=s.min_value[keep],
        min_step=s.min_step[keep], max_value=s.max_value[keep], max_step=s.max_step[keep],
    )


def _run_bytes(series: FlushSeries) -> np.ndarray[Any, Any]:
    runs = np.frombuffer(b"".join(r.bytes for r in series.runs), dtype="V16")
    return runs[series.run_idx]


def _heads(conn: Connection[Any], series: FlushSeries) -> HeadArrays:
    heads = HeadArrays.empty(series.size)
    cur = conn.cursor(binary=True)
    cur.execute(_HEADS_SQL, (
        UuidArray(_run_bytes(series)), Int4Array(series.key_ids.astype(np.int32)),
        Int4Array(series.ranks.astype(np.int32)),
    ))
    rows = cur.fetchall()
    if rows:
        got = np.array(rows, dtype=np.int64)
        at = got[:, 0] - 1  # ordinality counts from 1
        heads.exists[at] = True
        heads.attempt[at] = got[:, 1]
        heads.first_step[at] = got[:, 2]
        heads.last_step[at] = got[:, 3]
    return heads


def _write_heads(conn: Connection[Any], series: FlushSeries,
                       plan: FlushPlan) -> None:
    m = plan.head_changed
    if not m.any():
        return
    conn.execute(_UPSERT_HEADS_SQL, (
        UuidArray(_run_bytes(series)[m]), Int4Array(series.key_ids[m].astype(np.int32)),
        Int4Array(series.ranks[m].astype(np.int32)),
        Int4Array(plan.head.attempt[m].astype(np.int32)),
        Int8Array(plan.head.first_step[m]), Int8Array(plan.head.last_step[m]),
    ))


def _stored_chunks(conn: Connection[Any], keys: list[SummaryKey]
                         ) -> dict[SummaryKey, Chunks]:
    cur = conn.cursor(binary=True)
    use_numpy_arrays(cur)
    cur.execute(_SERIES_CHUNKS_SQL, (
        UuidArray.of([k[0] for k in keys]), Int4Array(np.array([k[1] for k in keys], np.int32)),
    ))
    groups: dict[SummaryKey, list[tuple[Any, ...]]] = {}
    for row in cur.fetchall():
        groups.setdefault((row[0], int(row[1])), []).append(row[2:])
    out: dict[SummaryKey, Chunks] = {}
    for key, rows in groups.items():
        steps, values, wall = decode_chunk_rows(rows)
        ranks, attempts, ids = zip(*(r[:3] for r in rows), strict=True)
        out[key] = Chunks(
            ranks=np.array(ranks, dtype=np.int64), attempts=np.array(attempts, dtype=np.int64),
            chunk_ids=np.array(ids, dtype=np.int64),
            sizes=np.array([len(s) for s in steps], dtype=np.int64),
            steps=np.concatenate(steps), values=np.concatenate(values),
            wall_ns=np.concatenate(wall),
        )
    return out


def write_summaries(conn: Connection[Any], chunks: ChunkSet,
                          deltas: SummarySet) -> tuple[set[SummaryKey], set[SummaryKey]]:
    """Update the summaries (and series heads) a flush touches, on the flush's
    connection after its COPY; returns the (run, key)s recomputed and marked stale."""
    series = flush_series(chunks)
    plan = plan_flush(series, _heads(conn, series))
    _write_heads(conn, series, plan)
    recomputed = series.summary_keys(plan.recompute) if plan.recompute.any() else set()
    stale_keys = (series.summary_keys(plan.stale) - recomputed) if plan.stale.any() else set()
    if not recomputed:  # the common case: every summary takes its delta
        conn.execute(_SUMMARY_SQL, _params(deltas))
    else:
        keep = np.array([k not in recomputed for k in zip(
            deltas.run_ids, deltas.key_ids.tolist(), strict=True)], dtype=bool)
        if keep.any():
            conn.execute(_SUMMARY_SQL, _params(_subset(deltas, keep)))
        recompute_summaries(conn, recomputed)
    if stale_keys:
        ordered = sorted(stale_keys, key=lambda k: (k[0].bytes, k[1]))
        conn.execute(_MARK_STALE_SQL, (
            UuidArray.of([k[0] for k in ordered]),
            Int4Array(np.array([k[1] for k in ordered], np.int32))))
    return recomputed, stale_keys


def recompute_summaries(conn: Connection[Any], keys: set[SummaryKey]) -> int:
    """Recompute the summaries of ``keys`` from their chunks (and clear their stale
    mark), in the caller's transaction, which must hold their runs' locks; returns the
    points read."""
    stored = _stored_chunks(conn, sorted(keys, key=lambda k: (k[0].bytes, k[1])))
    rows = {}
    for key, series in stored.items():
        got = recompute(series)
        if got is not None:
            rows[key] = got
    if rows:
        summaries = summary_set(rows)
        conn.execute(_REPLACE_SQL, _params(summaries))
    return sum(int(c.steps.shape[0]) for c in stored.values())
