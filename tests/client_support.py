"""Helpers for the client tests: fast options, waiting, reading back what was stored."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.support import iter_points
from tracker_client import Options
from tracker_server.storage.points_export import materialize_points

FAST = Options(
    flush_interval_s=0.02,
    backoff_initial_s=0.05,
    backoff_max_s=0.5,
    init_timeout_s=2.0,
    rpc_timeout_s=5.0,
    system_metrics_interval_s=None,
    recover_orphans=False,
)
"""Client options for tests: quick batches and reconnects, no background extras."""


def fast(spool_dir: Path, **changes: Any) -> Options:
    """FAST with a spool root (and any other changes)."""
    return replace(FAST, spool_dir=spool_dir, **changes)


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.02,
             what: str = "condition") -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def stored(database_url: str, run_id: str) -> Counter[tuple[str, int, int, int]]:
    """Multiset of (key, rank, attempt, step) stored for a run (duplicates show as > 1)."""
    import psycopg

    with psycopg.connect(database_url) as conn:
        materialize_points(conn, [run_id])
        rows = conn.execute(
            "SELECT key, rank, attempt, step FROM metric_points WHERE run_id = %s", (run_id,)
        ).fetchall()
    return Counter((str(k), int(r), int(a), int(s)) for k, r, a, s in rows)


def values(database_url: str, run_id: str) -> dict[tuple[str, int], float]:
    """(key, step) -> value of a run (rank 0)."""
    return {(k, s): v for k, r, s, v, _ in iter_points(database_url, run_id) if r == 0}


def rank_worker(rank: int, address: str, run_key: str, spool_dir: str, steps: int) -> None:
    """One "GPU rank" of a job: rank from $RANK, run from the shared run key.

    Runs in a spawned process, like a torchrun/SLURM task.
    """
    import os

    os.environ["RANK"] = str(rank)
    os.environ["WORLD_SIZE"] = "2"
    import tracker_client

    run = tracker_client.init(experiment="ranks", server=address, run_key=run_key,
                              options=fast(Path(spool_dir)))
    assert run.rank == rank
    for step in range(steps):
        run.log({"loss": 1.0 / (step + 1) + rank, "lr": 0.1}, step=step)
    report = run.finish(timeout=30)
    if not report.durable:
        raise SystemExit(f"rank {rank}: not durable: {report}")
