"""Two servers on one database, writers spread over both behind an L4 balancer (one
fault proxy per writer, preferring one server and falling back to the other).

1. Server B is SIGKILLed: its writers fail over to A.
2. B restarted, its writers moved back, then B is SIGSTOPped *inside* its flush
   transaction for 25 s, holding the locks of run R1; the balancer takes B out. A keeps
   acknowledging the writers of another run (R2) all along; R1's writers, now on A,
   wait only until PostgreSQL ends B's idle transaction
   (``TRACKER_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS``), then go on.

Afterwards both runs hold every point exactly once, although B, thawed, still had the
batches it had buffered before it froze.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg

from tests.fault.checks import Report
from tests.fault.support import (
    FaultProxy,
    ServerProc,
    Writer,
    check_run,
    closing_all,
    merged_logged,
    outcome,
    start_writers,
    wait_progress,
    wait_until,
)

IDLE_TIMEOUT_MS = 4_000
FLUSH_LOCK_WAIT_MS = 500
FREEZE_S = 25


def _server(database_url: str, name: str, tmp_path: Path) -> ServerProc:
    url = psycopg.conninfo.make_conninfo(database_url, application_name=f"tracker-{name}")
    return ServerProc(url, tmp_path / f"server-{name}.log",
                      TRACKER_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS=str(IDLE_TIMEOUT_MS),
                      TRACKER_DB_STATEMENT_TIMEOUT_MS=str(IDLE_TIMEOUT_MS),
                      TRACKER_FLUSH_LOCK_WAIT_MS=str(FLUSH_LOCK_WAIT_MS))


def _in_flush(database_url: str, app: str) -> list[tuple[int, object]]:
    """(pid, xact_start) of the server's backends inside a transaction holding a run
    lock (the flush's advisory locks are two-key ones: objsubid 2)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT DISTINCT a.pid, a.xact_start FROM pg_stat_activity a "
            "JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory' "
            "AND l.objsubid = 2 AND l.granted "
            "WHERE a.application_name = %s AND a.xact_start IS NOT NULL", (app,)).fetchall()
    return [(int(p), x) for p, x in rows]


def _freeze_inside_flush(srv: ServerProc, database_url: str, app: str) -> int:
    """SIGSTOP ``srv`` while one of its flush transactions holds run locks; returns
    the backend pid left waiting inside that transaction."""
    # Flush transactions are short (group commit: a few ms each at this load), so poll
    # for one for up to 90 s: a loaded CI machine can take many tries (a catch counts
    # only if the backend still waits after the stop; two clean-clone CI runs missed
    # for 30 s while every local run caught one within seconds).
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if _in_flush(database_url, app):
            srv.freeze()
            time.sleep(0.3)  # a statement under way finishes; the backend then waits
            still = _in_flush(database_url, app)
            if still:
                return still[0][0]
            srv.thaw()
        time.sleep(0.002)
    raise AssertionError("never caught the server inside a flush transaction")


class AckWatch(threading.Thread):
    """Samples a writer's acknowledged points; the longest time without progress while
    it had something unacknowledged."""

    def __init__(self, writer: Writer) -> None:
        super().__init__(daemon=True)
        self.writer = writer
        self.stop = threading.Event()
        self.longest_stall_s = 0.0

    def run(self) -> None:
        last, since = self.writer.acked, time.monotonic()
        while not self.stop.wait(0.05):
            now, acked = time.monotonic(), self.writer.acked
            if acked != last or acked >= self.writer.logged_points:
                last, since = acked, now
            self.longest_stall_s = max(self.longest_stall_s, now - since)


def test_two_servers_kill_and_freeze(database_url: str, tmp_path: Path) -> None:
    a, b = _server(database_url, "a", tmp_path), _server(database_url, "b", tmp_path)
    a.start()
    b.start()
    # R1: rank 0 on A, ranks 1 and 2 on B. R2: one writer on A.
    proxies = [FaultProxy(a.port, (b.port,)), FaultProxy(b.port, (a.port,)),
               FaultProxy(b.port, (a.port,)), FaultProxy(a.port, (b.port,))]
    with closing_all(a, b, *proxies):
        r1 = start_writers(lambda rank: proxies[rank].address, "two-r1", 3, tmp_path / "r1")
        r2 = start_writers(proxies[3].address, "two-r2", 1, tmp_path / "r2")
        watch = AckWatch(r2[0])
        watch.start()
        time.sleep(2)
        assert proxies[1].target_of_links() == {b.port}

        # 1. B killed: ranks 1 and 2 fail over to A.
        b.kill()
        failover_s = wait_progress(r1, 60)
        assert proxies[1].target_of_links() == {a.port}
        stall_after_kill = watch.longest_stall_s

        # 2. B back; ranks 1 and 2 return to it; B frozen inside a flush of R1.
        b.start()
        for p in proxies[1:3]:
            p.prefer(b.port)
        wait_until(lambda: all(p.target_of_links() == {b.port} for p in proxies[1:3]), 30,
                   "ranks 1 and 2 back on B")
        wait_progress(r1, 30)
        watch.longest_stall_s = 0.0
        backend = _freeze_inside_flush(b, database_url, "tracker-b")
        frozen_at = time.monotonic()
        for p in proxies[1:3]:
            p.prefer(a.port)  # the balancer's health check takes B out
        # R1's writers resume on A once PostgreSQL ends B's idle transaction.
        r1_resumed_s = wait_progress(r1, FREEZE_S - 2)
        time.sleep(max(0.0, FREEZE_S - (time.monotonic() - frozen_at)))
        r2_stall = watch.longest_stall_s
        b.thaw()
        with psycopg.connect(database_url, autocommit=True) as conn:
            alive = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                 (backend,)).fetchone()
        assert alive == (0,)  # PostgreSQL ended the frozen server's session
        wait_progress(r1 + r2, 60)
        watch.stop.set()
        time.sleep(1)  # B, thawed, retries its buffered batches: fenced, never twice
        reports = [w.finish(timeout=30) for w in r1 + r2]
        assert all(r.durable for r in reports), reports
        run1, run2 = r1[0].run_id, r2[0].run_id
        assert run1 is not None and run2 is not None
        report1 = check_run(a.address, database_url, run1, merged_logged(r1))
        report2 = check_run(a.address, database_url, run2, merged_logged(r2))
    # The healthy server kept acknowledging the unrelated run: at most the flush lock
    # wait and a flush or two of delay, never the freeze.
    assert r2_stall < 3.0, r2_stall
    assert stall_after_kill < 3.0, stall_after_kill
    # R1 waited for the idle-transaction timeout, not for the whole freeze.
    assert r1_resumed_s < IDLE_TIMEOUT_MS / 1000 + 6, r1_resumed_s
    outcome("two servers: one killed", "SIGKILL of one of two servers; its writers fail over",
            r1, report1, failover_s)
    outcome("two servers: one frozen in its flush",
            f"SIGSTOP of one of two servers inside its flush transaction for {FREEZE_S} s",
            r1 + r2, _sum(report1, report2), r1_resumed_s,
            unrelated_run_longest_ack_stall_s=round(r2_stall, 2),
            idle_in_transaction_timeout_s=IDLE_TIMEOUT_MS / 1000)


def _sum(*reports: Report) -> Report:
    out = Report()
    for r in reports:
        out.logged += r.logged
        out.stored += r.stored
        out.duplicates += r.duplicates
        out.missing += r.missing
    return out
