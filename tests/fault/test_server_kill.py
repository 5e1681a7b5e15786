"""The server SIGKILLed mid-stream and restarted: writers reconnect and resend from
their spools; every point is stored exactly once."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.fault.support import (
    ServerProc,
    check_run,
    closing_all,
    merged_logged,
    outcome,
    start_writers,
    wait_progress,
)


def test_sigkill_of_the_server_mid_stream(database_url: str, tmp_path: Path) -> None:
    srv = ServerProc(database_url, tmp_path / "server.log")
    srv.start()
    writers = start_writers(srv.address, "server-kill", 3, tmp_path)
    with closing_all(srv):
        time.sleep(2)
        srv.kill()  # mid-stream: batches in flight, some committed but not yet acked
        time.sleep(1)
        srv.start()
        recovery = wait_progress(writers, 60)
        time.sleep(1)
        reports = [w.finish(timeout=30) for w in writers]
        assert all(r.durable for r in reports), reports
        run_id = writers[0].run_id
        assert run_id is not None and all(w.run_id == run_id for w in writers)
        report = check_run(srv.address, database_url, run_id, merged_logged(writers))
        assert sum(w.tracker_run.stats.reconnects for w in writers) >= 3
    outcome("server SIGKILL", "SIGKILL of tracker-server mid-stream, restarted after 1 s",
            writers, report, recovery)


@pytest.mark.slow
def test_repeated_sigkills_long(database_url: str, tmp_path: Path) -> None:
    """Ten kills at random moments over a minute and a half of streaming."""
    rng = random.Random(3)
    srv = ServerProc(database_url, tmp_path / "server.log")
    srv.start()
    writers = start_writers(srv.address, "server-kill-long", 4, tmp_path)
    with closing_all(srv):
        for _ in range(10):
            time.sleep(rng.uniform(2, 8))
            srv.kill()
            time.sleep(rng.uniform(0, 2))
            srv.start()
        recovery = wait_progress(writers, 120)
        reports = [w.finish(timeout=60) for w in writers]
        assert all(r.durable for r in reports), reports
        run_id = writers[0].run_id
        assert run_id is not None
        report = check_run(srv.address, database_url, run_id, merged_logged(writers))
    outcome("server SIGKILL x10 (slow)", "ten SIGKILLs of tracker-server at random moments",
            writers, report, recovery)
