"""PostgreSQL frozen (SIGSTOP of the postmaster and every backend) for 10 s while
writers push: the server's memory stays within its budget, writers are told to slow
down, and after the thaw everything is delivered exactly once."""

from __future__ import annotations

import time
from pathlib import Path

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

MiB = 1 << 20
BUDGET = 4 * MiB
FREEZE_S = 10


def test_postgres_frozen(tmp_path: Path) -> None:
    pg = PrivatePostgres(tmp_path / "db")
    srv = ServerProc(pg.url, tmp_path / "server.log",
                     TRACKER_MEMORY_BUDGET_BYTES=str(BUDGET),
                     TRACKER_FLUSH_BYTES=str(MiB), TRACKER_MAX_FLUSH_BYTES=str(MiB))
    with closing_all(pg, srv):
        srv.start()
        # 3 x 3 keys x 4000 steps/s: ~1 MiB/s of buffered points, the budget in 4 s.
        writers = start_writers(srv.address, "pg-freeze", 3, tmp_path, steps_per_s=4000)
        time.sleep(2)
        base_rss = srv.rss()
        slow_before = sum(w.tracker_run.stats.slow_downs for w in writers)
        frozen = pg.freeze()
        peak_rss = base_rss
        try:
            started = time.monotonic()
            while time.monotonic() - started < FREEZE_S:
                peak_rss = max(peak_rss, srv.rss())
                time.sleep(0.1)
        finally:
            pg.thaw(frozen)
        recovery = wait_progress(writers, 90)
        slow_downs = sum(w.tracker_run.stats.slow_downs for w in writers) - slow_before
        time.sleep(1)
        reports = [w.finish(timeout=60) for w in writers]
        assert all(r.durable for r in reports), reports
        run_id = writers[0].run_id
        assert run_id is not None
        report = check_run(srv.address, pg.url, run_id, merged_logged(writers))
    assert slow_downs > 0
    # Bounded: the budget plus what one flush and gRPC's windows hold, not the backlog.
    assert peak_rss - base_rss < BUDGET + 60 * MiB, (base_rss, peak_rss)
    outcome("PostgreSQL frozen", f"SIGSTOP of the postmaster and backends for {FREEZE_S} s",
            writers, report, recovery, slow_downs=slow_downs,
            rss_growth_mib=round((peak_rss - base_rss) / MiB, 1),
            budget_mib=BUDGET // MiB)
