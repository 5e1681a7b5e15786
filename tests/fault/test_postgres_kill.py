"""PostgreSQL dies mid-stream (SIGKILL of the postmaster, or ``pg_ctl stop -m
immediate``) and comes back 5 s later: flushes fail and are retried, nothing is
acknowledged that was not committed, and after crash recovery every point is stored
exactly once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fault.support import (
    PrivatePostgres,
    ServerProc,
    check_run,
    closing_all,
    merged_logged,
    outcome,
    start_writers,
    wait_progress,
)


@pytest.mark.parametrize("how", ["sigkill", "immediate"])
def test_postgres_killed_and_restarted(tmp_path: Path, how: str) -> None:
    pg = PrivatePostgres(tmp_path / "db")
    srv = ServerProc(pg.url, tmp_path / "server.log")
    with closing_all(pg, srv):
        srv.start()
        writers = start_writers(srv.address, f"pg-{how}", 3, tmp_path)
        time.sleep(2)
        acked_before = sum(w.acked for w in writers)
        if how == "sigkill":
            pg.kill()
        else:
            pg.stop_immediate()
        time.sleep(1)  # acks of commits that made it before the kill arrive
        acked_down = sum(w.acked for w in writers)
        time.sleep(4)
        # Nothing is acknowledged while the database is down.
        assert sum(w.acked for w in writers) == acked_down
        pg.start()
        recovery = wait_progress(writers, 90)
        time.sleep(1)
        reports = [w.finish(timeout=60) for w in writers]
        assert all(r.durable for r in reports), reports
        run_id = writers[0].run_id
        assert run_id is not None
        report = check_run(srv.address, pg.url, run_id, merged_logged(writers))
        assert srv.proc is not None and srv.proc.poll() is None  # the server lived through it
    label = "SIGKILL of the postmaster" if how == "sigkill" else "pg_ctl stop -m immediate"
    outcome(f"PostgreSQL {how}", f"{label} mid-stream, restarted 5 s later", writers,
            report, recovery, acked_before_fault=acked_before, acked_while_down=acked_down)
