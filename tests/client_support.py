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
        rows = conn.execute(
            "SELECT key, rank, attempt, step FROM metric_points WHERE run_id = %s", (run_id,)
        ).fetchall()
    return Counter((str(k), int(r), int(a), int(s)) for k, r, a, s in rows)


def values(database_url: str, run_id: str) -> dict[tuple[str, int], float]:
    """(key, step) -> value of a run (rank 0)."""
    return {(k, s): v for k, r, s, v, _ in iter_points(database_url, run_id) if r == 0}
