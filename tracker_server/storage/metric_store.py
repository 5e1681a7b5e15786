"""PostgreSQL side of ingest: writer offsets, key table, the flush transaction.

Flush transactions run in threads on blocking connections (one per flush lane), so a
COPY streams to PostgreSQL at libpq's pace whatever the event loop is doing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from psycopg import Connection
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from tracker_server.domain.errors import failed_precondition, not_found
from tracker_server.domain.ingest import CommitPlan, Planner
from tracker_server.domain.points import WriterInfo, WriterKey
from tracker_server.storage import citus
from tracker_server.storage.copy_binary import COPY_COLUMNS, encode_chunks
from tracker_server.storage.errors import db_errors
from tracker_server.storage.flush_locks import RunLocks
from tracker_server.storage.pg_params import (
    Int4Array,
    Int8Array,
    UuidArray,
    register_globally,
)
from tracker_server.storage.summary_store import write_summaries

register_globally()

_KNOWN_OFFSETS_MAX = 100_000

_COPY_SQL = f"COPY metric_chunks ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"

_OPEN_SQL = """
SELECT r.attempt, o.committed_seq
FROM runs r
LEFT JOIN writer_offsets o ON o.run_id = r.run_id AND o.writer_id = %(writer)s
WHERE r.run_id = %(run)s
"""

_ENSURE_OFFSETS_SQL = """
INSERT INTO writer_offsets (run_id, writer_id, rank, attempt)
SELECT * FROM unnest(%s::uuid[], %s::text[], %s::int[], %s::int[])
ON CONFLICT (run_id, writer_id) DO NOTHING
"""

# Locks are taken in (run_id, writer_id) order so concurrent flushes (other replicas)
# cannot deadlock; this row lock is the fence of the compare-and-set.
_LOCK_OFFSETS_SQL = """
SELECT o.run_id, o.writer_id, o.committed_seq
FROM writer_offsets o
JOIN unnest(%s::uuid[], %s::text[]) AS w(run_id, writer_id)
  ON o.run_id = w.run_id AND o.writer_id = w.writer_id
ORDER BY o.run_id, o.writer_id
FOR UPDATE OF o
"""

_UPDATE_OFFSETS_SQL = """
UPDATE writer_offsets o
SET committed_seq = w.seq, updated_at = now()
FROM unnest(%s::uuid[], %s::text[], %s::int8[]) AS w(run_id, writer_id, seq)
WHERE o.run_id = w.run_id AND o.writer_id = w.writer_id
"""

_KEYS_INSERT_SQL = (
    "INSERT INTO metric_keys (name) SELECT unnest(%s::text[]) ORDER BY 1 "
    "ON CONFLICT (name) DO NOTHING"
)
_KEYS_SELECT_SQL = "SELECT name, key_id FROM metric_keys WHERE name = ANY(%s::text[])"


class PgMetricStore:
    """Implements ``domain.ingest.MetricStore`` on PostgreSQL."""

    def __init__(self, pool: AsyncConnectionPool, flush_pool: ConnectionPool,
                 run_locks: RunLocks | None = None) -> None:
        """``pool`` serves opens and key lookups on the event loop; ``flush_pool`` holds
        the flush lanes' blocking connections (one per lane)."""
        self._pool = pool
        self._flush_pool = flush_pool
        self._key_ids: dict[str, int] = {}
        self._has_offsets: set[WriterKey] = set()
        """Writers whose offset row this process has seen committed."""
        self._run_locks = run_locks or RunLocks(wait_s=1.0, stuck_s=10.0)
        self._citus: bool | None = None
        """Citus schema mode (storage/citus.py), seen on the first flush."""

    async def open_writer(self, info: WriterInfo) -> int:
        with db_errors():
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    _OPEN_SQL, {"run": info.key.run_id, "writer": info.key.writer_id}
                )
                row = await cur.fetchone()
        if row is None:
            raise not_found(f"run {info.key.run_id} not found")
        current_attempt, committed = row
        if info.attempt > current_attempt:
            raise failed_precondition(
                f"attempt {info.attempt} is newer than the run's attempt {current_attempt}; "
                "create it with CreateRun(resume=true)"
            )
        return int(committed or 0)

    async def resolve_keys(self, names: list[str]) -> list[int]:
        missing = [n for n in names if n not in self._key_ids]
        if missing:
            with db_errors():
                async with self._pool.connection() as conn:
                    await conn.execute(_KEYS_INSERT_SQL, (missing,))
                    cur = await conn.execute(_KEYS_SELECT_SQL, (missing,))
                    for name, key_id in await cur.fetchall():
                        self._key_ids[name] = key_id
        return [self._key_ids[n] for n in names]

    def prepare(self, plan: CommitPlan) -> None:
        """Encode the plan's chunk rows as the COPY payload (CPU only, thread-safe)."""
        if plan.chunks is not None and plan.chunks.rows:
            plan.payload = encode_chunks(plan.chunks)

    async def commit(
        self,
        writers: list[WriterInfo],
        plan: Planner,
    ) -> CommitPlan:
        # The whole transaction runs in a thread on a blocking connection: libpq sends
        # the COPY payload while the event loop parses the next messages, instead of a
        # few hundred kilobytes per loop turn.
        return await asyncio.to_thread(self._commit, writers, plan)

    def _commit(self, writers: list[WriterInfo], plan: Planner) -> CommitPlan:
        with db_errors(), self._flush_pool.connection() as conn, conn.transaction():
            committed: dict[WriterKey, int] = {}
            if self._citus is None:
                self._citus = citus.is_citus(conn)
            # Runs another transaction holds past the wait (a frozen peer): their
            # writers wait for a later flush, the others commit now.
            busy = self._run_locks.acquire(conn, (w.key.run_id for w in writers))
            deferred = frozenset(w.key for w in writers if w.key.run_id in busy)
            if deferred:
                writers = [w for w in writers if w.key not in deferred]
            if writers:
                # A writer's offset row exists after its first commit: only new writers
                # (or rows gone since) need the INSERT, one statement less per flush.
                fresh = [w for w in writers if w.key not in self._has_offsets]
                if fresh:
                    self._ensure_offsets(conn, fresh)
                committed = self._lock_offsets(conn, writers)
                gone = [w for w in writers if w.key not in committed]
                if gone:
                    self._ensure_offsets(conn, gone)
                    committed.update(self._lock_offsets(conn, gone))
            # Usually built and encoded ahead by the engine's lanes; rebuilt here when
            # the locked seqs (or the deferred writers) are not the ones it was built for.
            result = plan(committed, deferred)
            if result.chunks is not None and result.chunks.rows:
                # Unsequenced batches may bring runs no writer named: lock them too.
                self._run_locks.lock(
                    conn, set(result.chunks.run_ids) - {w.key.run_id for w in writers})
                payload = result.payload
                if payload is None:
                    payload = encode_chunks(result.chunks)
                with conn.cursor() as cur2, cur2.copy(_COPY_SQL) as copy:
                    copy.write(payload)
                if result.summaries is not None:
                    write_summaries(conn, result.chunks, result.summaries)
            if result.offsets:
                keys = sorted(result.offsets)
                conn.execute(
                    _UPDATE_OFFSETS_SQL,
                    (UuidArray.of([k.run_id for k in keys]), [k.writer_id for k in keys],
                     Int8Array(np.array([result.offsets[k] for k in keys], np.int64))),
                )
        if len(self._has_offsets) > _KNOWN_OFFSETS_MAX:
            self._has_offsets.clear()  # a bound, not a cache policy: rows are re-checked
        self._has_offsets.update(committed)
        return result

    @staticmethod
    def _ensure_offsets(conn: Connection[Any], writers: list[WriterInfo]) -> None:
        conn.execute(
            _ENSURE_OFFSETS_SQL,
            (
                UuidArray.of([w.key.run_id for w in writers]),
                [w.key.writer_id for w in writers],
                Int4Array(np.array([w.rank for w in writers], np.int32)),
                Int4Array(np.array([w.attempt for w in writers], np.int32)),
            ),
        )

    def _lock_offsets(self, conn: Connection[Any], writers: list[WriterInfo]
                      ) -> dict[WriterKey, int]:
        if self._citus:
            return self._lock_offsets_by_run(conn, writers)
        cur = conn.execute(
            _LOCK_OFFSETS_SQL,
            (UuidArray.of([w.key.run_id for w in writers]), [w.key.writer_id for w in writers]),
        )
        return {WriterKey(run_id, writer_id): int(seq) for run_id, writer_id, seq in cur.fetchall()}

    @staticmethod
    def _lock_offsets_by_run(conn: Connection[Any], writers: list[WriterInfo]
                             ) -> dict[WriterKey, int]:
        """The same locks, one statement per run (Citus locks rows on one shard only),
        sent in one pipeline; runs in order, as above, so flushes cannot deadlock."""
        by_run: dict[Any, list[str]] = {}
        for w in writers:
            by_run.setdefault(w.key.run_id, []).append(w.key.writer_id)
        locked: dict[WriterKey, int] = {}
        with conn.pipeline():
            cursors = [conn.execute(citus.LOCK_OFFSETS_OF_RUN_SQL,
                                    (run_id, sorted(by_run[run_id])))
                       for run_id in sorted(by_run)]
            for cur in cursors:
                for run_id, writer_id, seq in cur.fetchall():
                    locked[WriterKey(run_id, writer_id)] = int(seq)
        return locked
