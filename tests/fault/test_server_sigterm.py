"""SIGTERM with a grace period while writers stream: the server exits with code 0
within the grace (plus a margin), every point acknowledged before it went is durable,
and the writers deliver the rest to the restarted server exactly once."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from tests.fault.support import (
    ServerProc,
    check_run,
    closing_all,
    merged_logged,
    outcome,
    start_writers,
    wait_progress,
)

GRACE_S = 5


def _stored_per_rank(url: str, run_id: str) -> dict[int, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT rank, sum(n) FROM metric_chunks WHERE run_id = %s "
                            "GROUP BY rank", (run_id,)).fetchall()
    return {int(r): int(n) for r, n in rows}


def test_sigterm_keeps_every_acknowledged_point(database_url: str, tmp_path: Path) -> None:
    srv = ServerProc(database_url, tmp_path / "server.log",
                     TRACKER_SHUTDOWN_GRACE_S=str(GRACE_S))
    srv.start()
    with closing_all(srv):
        writers = start_writers(srv.address, "sigterm", 3, tmp_path)
        time.sleep(2)
        code, took = srv.terminate(timeout=GRACE_S + 30)
        acked = {w.rank: w.acked for w in writers}
        run_id = writers[0].tracker_run.run_id
        stored = _stored_per_rank(database_url, run_id)
        assert code == 0, srv.log_text()[-2000:]
        assert took < GRACE_S + 5, took
        # Acknowledged means durable: nothing acked is missing once the server is gone.
        assert all(stored.get(rank, 0) >= n for rank, n in acked.items()), (acked, stored)
        srv.start()
        recovery = wait_progress(writers, 60)
        reports = [w.finish(timeout=30) for w in writers]
        assert all(r.durable for r in reports), reports
        report = check_run(srv.address, database_url, run_id, merged_logged(writers))
    outcome("server SIGTERM", f"SIGTERM with a {GRACE_S} s grace mid-stream, restarted",
            writers, report, recovery, exit_code=code, exit_s=round(took, 2),
            acked_at_exit=sum(acked.values()))
