"""Fault 7: client processes SIGKILLed mid-run and restarted with the same run key.

Three ranks log through ``tracker_client`` in their own processes and are SIGKILLed
together (a job killed by the scheduler or the OOM killer). What each had logged is in
its spool, including the records of its last ~100 ms that were not cut into a batch
yet (they are in the memory-mapped tail). The restarted ranks' ``init()`` recovers the
orphan spools and delivers them: every point logged before the kill is stored exactly
once, next to what the second life logs.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import struct
import time
from pathlib import Path

import psycopg
import pytest

from tests.client_support import fast
from tests.fault.checks import Logged, check_points, check_summaries
from tests.fault.support import KEYS, ServerProc, closing_all, record, value_of, wait_until
from tests.fault.support import Outcome as FaultOutcome
from tracker_client._tail import tail_backlog
from tracker_server.storage.points_export import materialize_points

pytestmark = [pytest.mark.timeout(180), pytest.mark.skipif(os.name != "posix", reason="signals")]

RANKS = 3
SECOND_LIFE = 10**6  # first step of the restarted ranks
SECOND_STEPS = 500


def _rank(address: str, spool_root: str, rank: int, first_step: int, steps: int | None,
          progress: str) -> None:
    """One rank: log KEYS at ~2000 steps/s; after each log() returned, write the step
    to ``progress`` (the page cache keeps it when the process is killed). ``steps``
    None: until killed; else log that many, wait for the orphan spools to be
    delivered, finish, and exit 0 when everything is durable."""
    import tracker_client

    opts = fast(Path(spool_root), flush_interval_s=0.1, recover_orphans=True)
    run = tracker_client.init(experiment="faults", server=address, run_key="client-kill",
                              rank=rank, options=opts)
    fd = os.open(progress, os.O_RDWR | os.O_CREAT, 0o644)
    step = first_step
    period = 1 / 2000
    next_at = time.monotonic()
    while steps is None or step < first_step + steps:
        run.log({k: value_of(rank, i, step) for i, k in enumerate(KEYS)}, step=step)
        os.pwrite(fd, struct.pack("<q", step), 0)
        step += 1
        next_at += period
        if (delay := next_at - time.monotonic()) > 0:
            time.sleep(delay)
    deadline = time.monotonic() + 60
    root = Path(spool_root)
    # The orphan of the first life is delivered by init()'s recovery thread, then removed.
    while [p for p in root.iterdir() if p != run.spool_path] and time.monotonic() < deadline:
        time.sleep(0.05)
    report = run.finish(timeout=30)
    raise SystemExit(0 if report.durable else f"rank {rank}: not durable: {report}")


def _progress(path: Path) -> int:
    return int(struct.unpack("<q", path.read_bytes()[:8])[0])


def test_sigkilled_clients_restarted_deliver_exactly_once(database_url: str,
                                                          tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    srv = ServerProc(database_url, tmp_path / "server.log")
    srv.start()
    with closing_all(srv):
        roots = [tmp_path / f"rank{r}" for r in range(RANKS)]
        progress = [tmp_path / f"progress{r}" for r in range(RANKS)]
        first = [ctx.Process(target=_rank, args=(srv.address, str(roots[r]), r, 0, None,
                                                 str(progress[r]))) for r in range(RANKS)]
        for p in first:
            p.start()
        wait_until(lambda: all(p.exists() and _progress(p) >= 3000 for p in progress), 90,
                   "the first life to log 3000 steps per rank")
        for p in first:
            assert p.pid is not None
            os.kill(p.pid, signal.SIGKILL)
        for p in first:
            p.join(10)
            assert p.exitcode == -signal.SIGKILL
        last = [_progress(p) for p in progress]
        orphans = [next(r.glob("*/meta.json")).parent for r in roots]
        # What the kill would have lost without the tail: records not cut into a batch.
        in_tail = [tail_backlog(o) for o in orphans]
        assert sum(in_tail) > 0, in_tail
        second = [ctx.Process(target=_rank, args=(srv.address, str(roots[r]), r,
                                                  SECOND_LIFE, SECOND_STEPS,
                                                  str(progress[r]))) for r in range(RANKS)]
        started = time.monotonic()
        for p in second:
            p.start()
        for p in second:
            p.join(120)
            assert p.exitcode == 0, p.exitcode
        recovery = time.monotonic() - started
        with psycopg.connect(database_url) as conn:
            (run_id,) = conn.execute("SELECT run_id FROM runs WHERE run_key = %s",
                                     ("client-kill",)).fetchone() or (None,)
            assert run_id is not None
            materialize_points(conn, [run_id])
            rows = conn.execute(
                "SELECT rank, max(step) FROM metric_points WHERE run_id = %s AND step < %s "
                "GROUP BY rank", (run_id, SECOND_LIFE)).fetchall()
        stored_last = dict(rows)
        logged: Logged = {}
        for r in range(RANKS):
            # The step in flight at the kill: log() may have returned before its progress
            # was written (stored, K + 1), or been cut short (not stored, K).
            assert stored_last[r] in (last[r], last[r] + 1), (r, stored_last[r], last[r])
            steps = [*range(stored_last[r] + 1),
                     *range(SECOND_LIFE, SECOND_LIFE + SECOND_STEPS)]
            for i, k in enumerate(KEYS):
                logged[(k, r)] = {s: value_of(r, i, s) for s in steps}
        report = check_points(database_url, str(run_id), logged)
        assert report.ok, report.problems
        assert not check_summaries(srv.address, database_url, str(run_id))
        assert not any(r.exists() and list(r.glob("*/meta.json")) for r in roots)
    record(FaultOutcome(
        "client SIGKILL", "3 client processes SIGKILLed mid-run, restarted with the same "
        "run key", RANKS, report.logged, report.stored, report.duplicates, report.missing,
        round(recovery, 2), {"points_in_tail_at_kill": sum(in_tail) * len(KEYS)}))
