"""Background repair of stale summaries (see ``domain.summary_rule``).

A flush that rewrites steps of a run's latest attempt merges its delta and marks the
(run, key) summary stale instead of re-reading the whole series on every flush. Every
``interval_s`` this task recomputes stale summaries, one run per transaction under the
run's flush lock (skipping a run another flush holds right now), and paces itself:
after recomputing a summary it leaves it alone for ``COST_FACTOR`` times what the
recomputation took, so a job that rewrites steps all the time costs a bounded share
of the database instead of one full read per flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass

import structlog
from psycopg_pool import ConnectionPool

from tracker_server.domain.summary_rule import SummaryKey
from tracker_server.storage.errors import db_errors
from tracker_server.storage.flush_locks import run_lock_key
from tracker_server.storage.summary_store import recompute_summaries

log = structlog.get_logger(__name__)

COST_FACTOR = 20.0
"""A repaired summary waits this many times its repair's duration before the next."""
BATCH = 500
"""Stale summaries looked at per round."""

_STALE_SQL = """
SELECT run_id, key_id FROM run_metric_summary WHERE stale ORDER BY run_id, key_id LIMIT %s
"""
_TRY_LOCK_SQL = "SELECT pg_try_advisory_xact_lock(%s, %s)"


@dataclass
class RepairRound:
    """What one round did."""

    repaired: int = 0
    skipped: int = 0
    points_read: int = 0


class SummaryRepair:
    """Recomputes stale summaries in the background."""

    def __init__(self, pool: ConnectionPool, interval_s: float) -> None:
        """``pool`` is a blocking pool (the flush lanes' one, sized with a spare
        connection for this task): recomputation shares its code with the flush."""
        self._pool = pool
        self._interval_s = interval_s
        self._not_before: dict[SummaryKey, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background task (no-op when the interval is 0)."""
        if self._interval_s > 0:
            self._task = asyncio.create_task(self._run(), name="summary-repair")

    async def stop(self) -> None:
        """Cancel the background task."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def repair_once(self) -> RepairRound:
        """One round: recompute the stale summaries that are due."""
        return await asyncio.to_thread(self._repair_once)

    def _repair_once(self) -> RepairRound:
        result = RepairRound()
        now = time.monotonic()
        self._not_before = {k: t for k, t in self._not_before.items() if t > now}
        with db_errors():
            with self._pool.connection() as conn:
                cur = conn.execute(_STALE_SQL, (BATCH,))
                due: dict[uuid.UUID, set[SummaryKey]] = {}
                for run_id, key_id in cur.fetchall():
                    key = (run_id, int(key_id))
                    if self._not_before.get(key, 0.0) <= now:
                        due.setdefault(run_id, set()).add(key)
                    else:
                        result.skipped += 1
            for run_id, keys in due.items():
                with self._pool.connection() as conn, conn.transaction():
                    locked = (conn.execute(
                        _TRY_LOCK_SQL, run_lock_key(run_id))).fetchone()
                    if not (locked and locked[0]):
                        result.skipped += len(keys)  # a flush of the run is under way
                        continue
                    started = time.monotonic()
                    result.points_read += recompute_summaries(conn, keys)
                    took = time.monotonic() - started
                result.repaired += len(keys)
                wait = COST_FACTOR * took
                for key in keys:
                    self._not_before[key] = time.monotonic() + wait
        return result

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                got = await self.repair_once()
                if got.repaired:
                    log.debug("summary_repair.round", repaired=got.repaired,
                              skipped=got.skipped, points_read=got.points_read)
            except Exception as exc:  # the next round retries; never kill the server
                log.warning("summary_repair.failed", error=repr(exc))
