"""Metric reads in PostgreSQL: keys, summaries, rankings and the chunks of a series
(implements ``domain.ports.MetricReader`` and ``domain.ports.SeriesReader``).

A chunk is stored as a codec payload (``domain.codec``, migration 0013) or, when
written before that, as three arrays; both are fetched in binary and decoded straight
into numpy (``decode_chunk_rows``, ``numpy_arrays``); duplicate resolution and
downsampling happen in ``domain.series``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
from psycopg_pool import AsyncConnectionPool

from tracker_server.domain.run_filter import Node
from tracker_server.domain.series import AttemptInfo, Chunks
from tracker_server.domain.sketch_plan import ChunkMeta, ChunkRead
from tracker_server.domain.summaries import KeyInfo, MetricSummary, RankedRun
from tracker_server.storage.chunk_rows import decode_chunk_rows
from tracker_server.storage.errors import db_errors
from tracker_server.storage.existing import EXPERIMENTS, RUNS, require_ids
from tracker_server.storage.numpy_arrays import use_numpy_arrays
from tracker_server.storage.run_filter_sql import compile_filter

_SUMMARY_COLUMNS = (
    "k.name, s.count, s.first_step, s.last_step, s.last_value, s.last_wall_ns, "
    "s.last_attempt, s.min_value, s.min_step, s.max_value, s.max_step"
)

_KEY_IDS = "SELECT name, key_id FROM metric_keys WHERE name = ANY(%s::text[])"

# Per (rank, attempt): smallest step (the supersession boundary of an attempt depends on
# all its chunks, not only those inside the requested range), chunk count and newest
# chunk id. A flush adds a higher id; the compactor merges consecutive small chunks into
# one (fewer chunks), so these rows also serve as the version of the series for the cache.
_ATTEMPTS = """
SELECT rank, attempt, min(first_step), count(*), max(chunk_id), sum(n) FROM metric_chunks
WHERE run_id = %(run)s AND key_id = %(key)s
GROUP BY rank, attempt
ORDER BY rank, attempt
"""

_CHUNKS = """
SELECT rank, attempt, chunk_id, n, steps, "values", wall_ns, payload FROM metric_chunks
WHERE run_id = %(run)s AND key_id = %(key)s
  AND first_step <= %(end)s AND last_step >= %(start)s
  AND (%(rank)s::int IS NULL OR rank = %(rank)s::int)
ORDER BY rank, attempt, chunk_id
"""

# Chunk metadata only (no arrays; the NULL tests do not detoast): plans which chunks a
# downsampled read takes from their sketches (domain.sketch_plan).
_CHUNK_META = """
SELECT rank, attempt, chunk_id, first_step, last_step, n,
    sketch_payload IS NOT NULL OR sketch_steps IS NOT NULL
FROM metric_chunks
WHERE run_id = %(run)s AND key_id = %(key)s
  AND first_step <= %(end)s AND last_step >= %(start)s
  AND (%(rank)s::int IS NULL OR rank = %(rank)s::int)
ORDER BY rank, attempt, chunk_id
"""

# The planned chunks by primary key, each as its raw points or as its sketch (payload or
# arrays, whichever layout the row has); CASE evaluates only the chosen branch, so the
# other column is never detoasted.
_PLANNED_CHUNKS = """
SELECT c.rank, c.attempt, c.chunk_id, c.n,
    CASE WHEN p.sketch THEN c.sketch_steps ELSE c.steps END,
    CASE WHEN p.sketch THEN c.sketch_values ELSE c."values" END,
    CASE WHEN p.sketch THEN c.sketch_wall_ns ELSE c.wall_ns END,
    CASE WHEN p.sketch THEN c.sketch_payload ELSE c.payload END
FROM unnest(%(ranks)s::int[], %(attempts)s::int[], %(ids)s::int8[], %(sketch)s::bool[])
    AS p(rank, attempt, chunk_id, sketch)
JOIN metric_chunks c ON c.run_id = %(run)s AND c.key_id = %(key)s AND c.rank = p.rank
    AND c.attempt = p.attempt AND c.chunk_id = p.chunk_id
ORDER BY c.rank, c.attempt, c.chunk_id
"""

# Chunk metadata only (no arrays): plans the windows of a full-resolution export.
_CHUNK_BOUNDS = """
SELECT first_step, n FROM metric_chunks
WHERE run_id = %(run)s AND key_id = %(key)s
  AND first_step <= %(end)s AND last_step >= %(start)s
  AND (%(rank)s::int IS NULL OR rank = %(rank)s::int)
ORDER BY first_step
"""

_LIST_KEYS = f"""
SELECT {_SUMMARY_COLUMNS},
    ARRAY(SELECT DISTINCT c.rank FROM metric_chunks c
          WHERE c.run_id = s.run_id AND c.key_id = s.key_id ORDER BY 1) AS ranks
FROM run_metric_summary s JOIN metric_keys k USING (key_id)
WHERE s.run_id = %s
ORDER BY k.name
"""

_LATEST = f"""
SELECT s.run_id, {_SUMMARY_COLUMNS}
FROM run_metric_summary s JOIN metric_keys k USING (key_id)
WHERE s.run_id = ANY(%(runs)s::uuid[])
  AND (cardinality(%(keys)s::text[]) = 0 OR k.name = ANY(%(keys)s::text[]))
ORDER BY s.run_id, k.name
"""

# Fixed fragments per (summary field, direction); chosen by lookup, never from input.
_BEST_VALUE = {
    "last": ("s.last_value", "s.last_step"),
    "min": ("s.min_value", "s.min_step"),
    "max": ("s.max_value", "s.max_step"),
}
_BEST = """
SELECT r.run_id, r.name, r.status, r.experiment_id, {value} AS value, {step} AS step,
    {summary}
FROM run_metric_summary s
JOIN runs r ON r.run_id = s.run_id
JOIN metric_keys k ON k.key_id = s.key_id
WHERE s.key_id = (SELECT key_id FROM metric_keys WHERE name = %s)
  AND r.experiment_id = ANY(%s::uuid[])
  AND {value} IS NOT NULL AND {value} <> 'NaN'::float8
  AND {filter}
ORDER BY {value} {direction}, r.run_id
LIMIT %s
"""


def summary_from_row(row: tuple[Any, ...] | list[Any]) -> MetricSummary:
    """Map the ``_SUMMARY_COLUMNS`` part of a row."""
    return MetricSummary(
        key=row[0],
        count=row[1],
        first_step=row[2],
        last_step=row[3],
        last_value=row[4],
        last_wall_ns=row[5],
        last_attempt=row[6],
        min_value=row[7],
        min_step=row[8],
        max_value=row[9],
        max_step=row[10],
    )


class PgMetricReader:
    """Metric reads: keys, chunks of a series, latest values, best runs."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def list_keys(self, run_id: uuid.UUID) -> list[KeyInfo]:
        """Keys of a run with summaries and ranks; NOT_FOUND for an unknown run."""
        with db_errors():
            async with self._pool.connection() as conn:
                await require_ids(conn, RUNS, [run_id])
                cur = await conn.execute(_LIST_KEYS, (run_id,))
                rows = await cur.fetchall()
        return [KeyInfo(summary_from_row(r), list(r[11])) for r in rows]

    async def key_ids(self, names: list[str]) -> dict[str, int]:
        """Ids of the known names among ``names``."""
        with db_errors():
            async with self._pool.connection() as conn:
                cur = await conn.execute(_KEY_IDS, (names,))
                return {name: key_id for name, key_id in await cur.fetchall()}

    async def attempts(self, run_id: uuid.UUID, key_id: int) -> list[AttemptInfo]:
        """One row per (rank, attempt) of the series, ordered."""
        with db_errors():
            async with self._pool.connection() as conn:
                cur = await conn.execute(_ATTEMPTS, {"run": run_id, "key": key_id})
                return [AttemptInfo(*map(int, row)) for row in await cur.fetchall()]

    async def chunks(
        self,
        run_id: uuid.UUID,
        key_id: int,
        start_step: int,
        end_step: int,
        rank: int | None,
    ) -> Chunks:
        """Chunks overlapping the step range (one rank or all), decoded into numpy."""
        args = {"run": run_id, "key": key_id, "start": start_step, "end": end_step,
                "rank": rank}
        with db_errors():
            async with self._pool.connection() as conn:
                cur = conn.cursor(binary=True)
                use_numpy_arrays(cur)
                await cur.execute(_CHUNKS, args)
                rows = await cur.fetchall()
        return _chunks_from_rows(rows)

    async def planned_chunks(
        self,
        run_id: uuid.UUID,
        key_id: int,
        start_step: int,
        end_step: int,
        rank: int | None,
        planner: Callable[[list[AttemptInfo], list[ChunkMeta]], list[ChunkRead] | None],
    ) -> tuple[list[AttemptInfo], Chunks] | None:
        """Attempts, chunk metadata, ``planner``'s choice, then the chosen chunks (raw or
        sketch), all in one snapshot: a chunk the compactor merges in between can
        neither vanish from the read nor appear twice. None when the planner says so."""
        args = {"run": run_id, "key": key_id, "start": start_step, "end": end_step,
                "rank": rank}
        with db_errors():
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                cur = await conn.execute(_ATTEMPTS, args)
                infos = [AttemptInfo(*map(int, row)) for row in await cur.fetchall()]
                cur = await conn.execute(_CHUNK_META, args)
                metas = [ChunkMeta(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4]),
                                   int(r[5]), bool(r[6])) for r in await cur.fetchall()]
                plan = planner(infos, metas)
                if plan is None:
                    return None
                bcur = conn.cursor(binary=True)
                use_numpy_arrays(bcur)
                await bcur.execute(_PLANNED_CHUNKS, {
                    "run": run_id, "key": key_id,
                    "ranks": [r.rank for r in plan], "attempts": [r.attempt for r in plan],
                    "ids": [r.chunk_id for r in plan], "sketch": [r.sketch for r in plan],
                })
                rows = await bcur.fetchall()
        return infos, _chunks_from_rows(rows, stored=True)

    async def chunk_bounds(
        self, run_id: uuid.UUID, key_id: int, start_step: int, end_step: int, rank: int | None
    ) -> list[tuple[int, int]]:
        """(first_step, n) of the chunks in range, by first_step."""
        args = {"run": run_id, "key": key_id, "start": start_step, "end": end_step,
                "rank": rank}
        with db_errors():
            async with self._pool.connection() as conn:
                cur = await conn.execute(_CHUNK_BOUNDS, args)
                return [(int(a), int(b)) for a, b in await cur.fetchall()]

    async def latest(
        self, run_ids: list[uuid.UUID], keys: list[str]
    ) -> dict[uuid.UUID, list[MetricSummary]]:
        """Summaries per run (every requested run present, possibly with no keys)."""
        out: dict[uuid.UUID, list[MetricSummary]] = {r: [] for r in run_ids}
        with db_errors():
            async with self._pool.connection() as conn:
                await require_ids(conn, RUNS, run_ids)
                cur = await conn.execute(_LATEST, {"runs": run_ids, "keys": keys})
                for row in await cur.fetchall():
                    out[row[0]].append(summary_from_row(row[1:]))
        return out

    async def best_runs(
        self,
        experiment_ids: list[uuid.UUID],
        key: str,
        maximize: bool,
        on: str,
        limit: int,
        where: Node | None,
    ) -> list[RankedRun]:
        """Runs of the experiments ranked by one summary value of ``key``."""
        value, step = _BEST_VALUE[on]
        flt = compile_filter(where)
        query = _BEST.format(
            value=value,
            step=step,
            summary=_SUMMARY_COLUMNS,
            filter=flt.text,
            direction="DESC" if maximize else "ASC",
        )
        with db_errors():
            async with self._pool.connection() as conn:
                await require_ids(conn, EXPERIMENTS, experiment_ids)
                cur = await conn.execute(query, [key, experiment_ids, *flt.params, limit])
                rows = await cur.fetchall()
        return [
            RankedRun(r[0], r[1], r[2], r[3], r[4], r[5], summary_from_row(r[6:])) for r in rows
        ]


def _chunks_from_rows(rows: list[tuple[Any, ...]], stored: bool = False) -> Chunks:
    """Rows of (rank, attempt, chunk_id, n, steps, values, wall_ns, payload) as
    ``Chunks``; ``stored`` keeps n per row (needed when some rows are sketches)."""
    if not rows:
        return Chunks.empty()
    steps, values, wall = decode_chunk_rows(rows)
    ranks, attempts, chunk_ids, n = zip(*(r[:4] for r in rows), strict=True)
    return Chunks(
        ranks=np.array(ranks, dtype=np.int64),
        attempts=np.array(attempts, dtype=np.int64),
        chunk_ids=np.array(chunk_ids, dtype=np.int64),
        sizes=np.array([len(s) for s in steps], dtype=np.int64),
        steps=np.concatenate(steps),
        values=np.concatenate(values),
        wall_ns=np.concatenate(wall),
        stored_n=np.array(n, dtype=np.int64) if stored else None,
    )
