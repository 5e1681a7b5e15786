"""Run locks of the flush transaction: a stuck peer costs only its own runs.

Every flush takes a transaction-scoped advisory lock per run it writes (two int4 keys
from the run's UUID, a namespace apart from the single-bigint locks of migrations and
the compactor). Flushes of one run — its ranks spread over lanes or server replicas —
take turns on it; flushes of different runs never touch the same rows.

A run whose lock is held by another transaction is waited for, by polling a
non-blocking try, up to ``wait_s``: a healthy peer's flush is over by then. A run still
held after that is *stuck* (a peer frozen inside its flush transaction, until
PostgreSQL ends that session at ``idle_in_transaction_session_timeout``): its writers
are left out of this flush (deferred, retried on the next one) and, for ``stuck_s``,
later flushes only try it once instead of waiting again, so writers of other runs are
not held up by a peer that shares nothing with them.

PostgreSQL ends a frozen peer's session at ``idle_in_transaction_session_timeout`` only
when the peer froze between statements. Frozen in the middle of its COPY, the backend
waits for the rest of the data, neither idle nor cancellable by ``statement_timeout``.
So a flush that finds a run stuck looks at the lock's holder, and terminates it
(``pg_terminate_backend``) when it has been inside a transaction, waiting for its
client, for longer than ``reap_after_s``: its transaction rolls back, nothing of it had
been acknowledged.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

import numpy as np
import psycopg
import structlog
from psycopg import Connection

from tracker_server.storage.pg_params import Int4Array, Int8Array, UuidArray

log = structlog.get_logger(__name__)

_TRY_SQL = """
SELECT t.run_id, pg_try_advisory_xact_lock(t.hi, t.lo)
FROM unnest(%s::uuid[], %s::int[], %s::int[]) WITH ORDINALITY AS t(run_id, hi, lo, i)
ORDER BY t.i
"""

_LOCK_SQL = """
SELECT count(pg_advisory_xact_lock(t.hi, t.lo))
FROM unnest(%s::int[], %s::int[]) WITH ORDINALITY AS t(hi, lo, i)
"""

POLL_S = 0.01

# Holders of run locks that have been waiting for their client (between statements, or
# inside a COPY) for longer than the threshold.
_STUCK_HOLDERS_SQL = """
SELECT DISTINCT a.pid
FROM pg_locks l
JOIN pg_stat_activity a ON a.pid = l.pid
JOIN unnest(%s::int8[], %s::int8[]) AS k(classid, objid)
  ON l.classid = k.classid::oid AND l.objid = k.objid::oid
WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted
  AND a.pid <> pg_backend_pid()
  AND a.xact_start IS NOT NULL
  AND (a.state IN ('idle in transaction', 'idle in transaction (aborted)')
       OR (a.state = 'active' AND a.wait_event = 'ClientRead'))
  AND now() - a.state_change > make_interval(secs => %s)
"""
_TERMINATE_SQL = "SELECT pg_terminate_backend(%s)"


def run_lock_key(run_id: uuid.UUID) -> tuple[int, int]:
    """The two int4 keys of a run's advisory lock (its UUID folded to 64 bits)."""
    value = run_id.int
    folded = (value >> 64) ^ (value & 0xFFFF_FFFF_FFFF_FFFF)
    hi, lo = folded >> 32, folded & 0xFFFF_FFFF
    return hi - (hi >> 31 << 32), lo - (lo >> 31 << 32)


def _keys(runs: list[uuid.UUID]) -> tuple[Any, Any]:
    pairs = [run_lock_key(r) for r in runs]
    return (Int4Array(np.array([p[0] for p in pairs], np.int32)),
            Int4Array(np.array([p[1] for p in pairs], np.int32)))


class RunLocks:
    """Advisory run locks for flush transactions, remembering stuck runs."""

    def __init__(self, wait_s: float, stuck_s: float, reap_after_s: float = 0.0) -> None:
        self.wait_s = wait_s
        self.stuck_s = stuck_s
        self.reap_after_s = reap_after_s
        """Terminate a lock holder waiting for its client longer than this (0: never)."""
        self._stuck_until: dict[uuid.UUID, float] = {}
        self._mutex = threading.Lock()
        """Flush lanes run in threads and share the stuck-run map."""
        self.reaped = 0
        """Sessions of stuck peers terminated so far."""

    def _try(self, conn: Connection[Any], runs: list[uuid.UUID]) -> list[uuid.UUID]:
        hi, lo = _keys(runs)
        cur = conn.execute(_TRY_SQL, (UuidArray.of(runs), hi, lo))
        return [r for r, got in cur.fetchall() if not got]

    def acquire(self, conn: Connection[Any], runs: Iterable[uuid.UUID]
                      ) -> set[uuid.UUID]:
        """Lock ``runs`` for the current transaction; returns those left unlocked
        (held elsewhere past the wait, or stuck)."""
        wanted = sorted(set(runs))
        if not wanted:
            return set()
        busy = self._try(conn, wanted)
        now = time.monotonic()
        with self._mutex:
            stuck = {r for r in busy if self._stuck_until.get(r, 0.0) > now}
        waiting = [r for r in busy if r not in stuck]
        deadline = now + self.wait_s
        while waiting and time.monotonic() < deadline:
            time.sleep(POLL_S)
            waiting = self._try(conn, waiting)
        still = set(waiting) | stuck
        if still and self.reap_after_s > 0:
            self._reap(conn, sorted(still))
        until = time.monotonic() + self.stuck_s
        with self._mutex:
            for r in waiting:
                self._stuck_until[r] = until
            for r in wanted:
                if r not in still:
                    self._stuck_until.pop(r, None)
            for r in [r for r, t in self._stuck_until.items() if t <= now]:
                del self._stuck_until[r]
        return still

    def _reap(self, conn: Connection[Any], runs: list[uuid.UUID]) -> None:
        """Terminate the sessions holding ``runs`` that are stuck on their client."""
        keys = [run_lock_key(r) for r in runs]
        cur = conn.execute(_STUCK_HOLDERS_SQL, (
            Int8Array(np.array([k[0] & 0xFFFF_FFFF for k in keys], np.int64)),
            Int8Array(np.array([k[1] & 0xFFFF_FFFF for k in keys], np.int64)),
            self.reap_after_s))
        for (pid,) in cur.fetchall():
            try:
                with conn.transaction():  # a savepoint: a refusal keeps the flush
                    conn.execute(_TERMINATE_SQL, (pid,))
            except psycopg.Error as exc:  # e.g. another role's session: leave it be
                log.warning("flush.reap_refused", pid=pid, error=repr(exc))
                return
            with self._mutex:
                self.reaped += 1
            log.warning("flush.reaped_stuck_peer", pid=pid, runs=len(runs),
                        after_s=self.reap_after_s)

    def lock(self, conn: Connection[Any], runs: Iterable[uuid.UUID]) -> None:
        """Lock ``runs``, waiting (bounded by the session's lock_timeout)."""
        wanted = sorted(set(runs))
        if wanted:
            hi, lo = _keys(wanted)
            conn.execute(_LOCK_SQL, (hi, lo))
