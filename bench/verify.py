"""Counting in PostgreSQL: did every sent point arrive exactly once?

The workload sends, per run and key, steps 0 .. S-1 once each. So the run's chunks
of one key must (a) hold S points in total, (b) cover steps 0 .. S-1, (c) have
non-overlapping step ranges, and (d) each hold ``last - first + 1`` points. (a)-(d)
together rule out both loss and duplicates without unnesting a single array
(``mode="ranges"``, cheap). ``mode="full"`` also decodes every point and checks that
no (run, key, step) appears twice.

(c) and (d) are sufficient, not necessary: two writers of one run (the client's
thread sender handing over to its sender process) may commit batches of neighbouring
steps in different flushes, so chunk ranges interleave with every point stored once.
A run whose only problem is interleaving (the right count over the right range) is
therefore decoded and counted point by point before it is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg

from tracker_server.storage.chunk_rows import CHUNK_COLUMNS, decode_chunk_rows
from tracker_server.storage.numpy_arrays import use_numpy_arrays

_PER_KEY_SQL = """
WITH c AS (
    SELECT run_id, key_id, first_step, last_step, n,
           lag(last_step) OVER (PARTITION BY run_id, key_id, rank, attempt
                                ORDER BY first_step, chunk_id) AS prev_last
    FROM metric_chunks
    WHERE run_id = ANY(%(runs)s)
)
SELECT run_id::text, key_id, count(*) AS chunks, sum(n) AS points,
       min(first_step) AS first_step, max(last_step) AS last_step,
       count(*) FILTER (WHERE prev_last >= first_step) AS overlaps,
       count(*) FILTER (WHERE n <> last_step - first_step + 1) AS gappy
FROM c
GROUP BY run_id, key_id
"""

# Points are decoded in Python (codec payloads, or arrays for chunks written before
# migration 0013), one run at a time; duplicates are counted with numpy.
_RUN_CHUNKS_SQL = f"""
SELECT key_id, {CHUNK_COLUMNS} FROM metric_chunks WHERE run_id = %(run)s
ORDER BY key_id, chunk_id
"""


def count_duplicates(conn: psycopg.Connection[Any], runs: list[str]) -> int:
    """(run, key, step)s stored more than once."""
    dups = 0
    for run in runs:
        cur = conn.cursor(binary=True)
        use_numpy_arrays(cur)
        cur.execute(_RUN_CHUNKS_SQL, {"run": run})
        by_key: dict[int, list[Any]] = {}
        for row in cur.fetchall():
            by_key.setdefault(int(row[0]), []).append(row)
        for rows in by_key.values():
            steps, _values, _wall = decode_chunk_rows(rows)
            _, counts = np.unique(np.concatenate(steps), return_counts=True)
            dups += int(np.count_nonzero(counts > 1))
    return dups


@dataclass
class Verification:
    """Outcome of the exactly-once check."""

    points_committed: int = 0
    chunks: int = 0
    keys_checked: int = 0
    problems: list[str] = field(default_factory=list)
    duplicates: int | None = None

    @property
    def ok(self) -> bool:
        """True when every point was committed exactly once."""
        return not self.problems and not self.duplicates

    def as_dict(self) -> dict[str, Any]:
        """For the JSON report."""
        return {
            "points_committed": self.points_committed,
            "chunks_committed": self.chunks,
            "exactly_once": self.ok,
            "verify_problems": self.problems[:20],
        }


def verify(conninfo: str, expected_steps: dict[str, int], keys: int,
           mode: str = "ranges") -> Verification:
    """Check runs ``expected_steps`` (run_id -> steps sent) against their chunks."""
    out = Verification()
    runs = list(expected_steps)
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(_PER_KEY_SQL, {"runs": runs}).fetchall()
        per_run: dict[str, int] = {}
        interleaved: set[str] = set()
        for run_id, key_id, chunks, points, first, last, overlaps, gappy in rows:
            out.chunks += int(chunks)
            out.points_committed += int(points)
            out.keys_checked += 1
            per_run[run_id] = per_run.get(run_id, 0) + 1
            want = expected_steps[run_id]
            whole = points == want and first == 0 and last == want - 1
            if whole and (overlaps or gappy):
                interleaved.add(run_id)
            elif not whole:
                out.problems.append(
                    f"run {run_id} key {key_id}: {points} points in steps {first}..{last}, "
                    f"{overlaps} overlapping and {gappy} gappy chunks; expected {want} "
                    f"points in steps 0..{want - 1}")
        for run_id, want in expected_steps.items():
            if want and per_run.get(run_id, 0) != keys:
                out.problems.append(
                    f"run {run_id}: {per_run.get(run_id, 0)} keys stored, expected {keys}")
        # Right count over the right range: with no (run, key, step) twice, every step
        # of the range is there exactly once.
        for run_id in sorted(interleaved):
            dups = count_duplicates(conn, [run_id])
            if dups:
                out.problems.append(f"run {run_id}: {dups} (run, key, step) stored more "
                                    "than once (and as many missing)")
        if mode == "full":
            out.duplicates = count_duplicates(conn, runs)
            if out.duplicates:
                out.problems.append(f"{out.duplicates} (run, key, step) stored more than once")
    return out
