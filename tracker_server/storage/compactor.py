"""Background compaction: merge small chunks of a (run, key, rank, attempt) series.

Small chunks are merged only with their neighbours between two big chunks of the same
series, and the merged chunk takes the highest chunk_id of the chunks it replaces, so the
order of writes that reads use to resolve a step logged twice is unchanged. Points keep
their order (chunk_id, then position). Everything happens in one transaction per round:
readers see the old chunks or the merged one, never both; ingest only inserts new chunks
and never waits on the compactor. A session advisory lock keeps replicas from
compacting at the same time. A merged chunk big enough for a min/max sketch
(``domain.sketch``) gets one, computed in the same statement, so long low-frequency
series keep the fast downsampled reads too.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import structlog
from psycopg_pool import AsyncConnectionPool

from tracker_server.domain.sketch import SKETCH_BUCKET_POINTS, SKETCH_MIN_POINTS
from tracker_server.storage.errors import db_errors

log = structlog.get_logger(__name__)

SMALL_CHUNK_POINTS = 512  # must match the partial index of migration 0005
_LOCK_KEY = 7_433_611_592_002

_CREATE_TMP = """
CREATE TEMP TABLE IF NOT EXISTS compact_ids (
    run_id uuid, key_id integer, rank integer, attempt integer, segment bigint,
    chunk_id bigint
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS compact_src (
    run_id uuid, key_id integer, rank integer, attempt integer, segment bigint,
    chunk_id bigint, steps int8[], "values" float8[], wall_ns int8[]
) ON COMMIT DELETE ROWS
"""

# Series with at least two small chunks. Within a series, big chunks split the small
# ones into segments (segment = id of the last big chunk before them); each segment with
# two or more small chunks is merged. Window functions instead of joins between CTEs:
# the planner estimates CTEs at one row and picked a nested loop that made a round of
# 22k chunks take a minute (quadratic). Metadata only here; arrays are not touched.
_PICK = f"""
WITH series AS (
    SELECT run_id, key_id, rank, attempt
    FROM metric_chunks
    WHERE n < {SMALL_CHUNK_POINTS}
    GROUP BY run_id, key_id, rank, attempt
    HAVING count(*) >= 2
    LIMIT %(series)s
),
seg AS (
    SELECT c.run_id, c.key_id, c.rank, c.attempt, c.chunk_id, c.n,
           coalesce(max(CASE WHEN c.n >= {SMALL_CHUNK_POINTS} THEN c.chunk_id END) OVER (
               PARTITION BY c.run_id, c.key_id, c.rank, c.attempt ORDER BY c.chunk_id), 0)
               AS segment
    FROM metric_chunks c JOIN series s USING (run_id, key_id, rank, attempt)
),
small AS (
    SELECT run_id, key_id, rank, attempt, segment, chunk_id,
           count(*) OVER (PARTITION BY run_id, key_id, rank, attempt, segment) AS k
    FROM seg
    WHERE n < {SMALL_CHUNK_POINTS}
)
INSERT INTO compact_ids
SELECT run_id, key_id, rank, attempt, segment, chunk_id FROM small WHERE k >= 2
"""

# With compact_ids analysed, this is one primary-key probe per chunk.
_TAKE = """
WITH moved AS (
    DELETE FROM metric_chunks c USING compact_ids d
    WHERE c.run_id = d.run_id AND c.key_id = d.key_id AND c.rank = d.rank
      AND c.attempt = d.attempt AND c.chunk_id = d.chunk_id
    RETURNING c.run_id, c.key_id, c.rank, c.attempt, d.segment, c.chunk_id, c.steps,
              c."values", c.wall_ns
)
INSERT INTO compact_src SELECT * FROM moved
"""

# One merged chunk per segment, points in write order (chunk_id, then position). A merged
# chunk of >= SKETCH_MIN_POINTS strictly increasing steps also gets its min/max sketch,
# the same as domain.sketch computes at flush time: per sub-bucket of B positions the
# first minimum and first maximum (NaN counts as +inf for the minimum and -inf for the
# maximum; PostgreSQL sorts NaN above +inf, hence the CASE), plus the first and last point.
_MERGE = f"""
WITH raw AS (
    SELECT run_id, key_id, rank, attempt, segment, chunk_id, p.s, p.v, p.w,
           row_number() OVER seg - 1 AS pos,
           p.s > lag(p.s) OVER seg AS up
    FROM compact_src, unnest(steps, "values", wall_ns) WITH ORDINALITY AS p(s, v, w, ord)
    WINDOW seg AS (PARTITION BY run_id, key_id, rank, attempt, segment
                   ORDER BY chunk_id, p.ord)
),
-- Segment size and monotonicity as window aggregates: no join back to "merged".
pts AS (
    SELECT raw.*,
           count(*) OVER whole AS seg_n,
           bool_and(coalesce(up, true)) OVER whole AS seg_increasing
    FROM raw
    WINDOW whole AS (PARTITION BY run_id, key_id, rank, attempt, segment)
),
merged AS (
    SELECT run_id, key_id, rank, attempt, segment, max(chunk_id) AS chunk_id,
           min(s) AS first_step, max(s) AS last_step, count(*) AS n,
           bool_and(coalesce(up, true)) AS increasing,
           array_agg(s ORDER BY pos) AS steps, array_agg(v ORDER BY pos) AS vals,
           array_agg(w ORDER BY pos) AS walls
    FROM pts
    GROUP BY run_id, key_id, rank, attempt, segment
),
ranked AS (
    SELECT p.*, p.seg_n AS n,
           row_number() OVER (PARTITION BY p.run_id, p.key_id, p.rank, p.attempt, p.segment,
                                           p.pos / {SKETCH_BUCKET_POINTS}
                              ORDER BY CASE WHEN p.v = 'NaN' THEN 'Infinity' ELSE p.v END,
                                       p.pos) AS low_rank,
           row_number() OVER (PARTITION BY p.run_id, p.key_id, p.rank, p.attempt, p.segment,
                                           p.pos / {SKETCH_BUCKET_POINTS}
                              ORDER BY CASE WHEN p.v = 'NaN' THEN '-Infinity' ELSE p.v END
                                       DESC, p.pos) AS high_rank
    FROM pts p
    WHERE p.seg_n >= {SKETCH_MIN_POINTS} AND p.seg_increasing
),
sketch AS (
    SELECT run_id, key_id, rank, attempt, segment,
           array_agg(s ORDER BY pos) AS steps, array_agg(v ORDER BY pos) AS vals,
           array_agg(w ORDER BY pos) AS walls
    FROM ranked
    WHERE low_rank = 1 OR high_rank = 1 OR pos = 0 OR pos = n - 1
    GROUP BY run_id, key_id, rank, attempt, segment
)
INSERT INTO metric_chunks (run_id, key_id, rank, attempt, chunk_id, first_step, last_step, n,
                           steps, "values", wall_ns, sketch_steps, sketch_values, sketch_wall_ns)
OVERRIDING SYSTEM VALUE
SELECT m.run_id, m.key_id, m.rank, m.attempt, m.chunk_id, m.first_step, m.last_step, m.n,
       m.steps, m.vals, m.walls, k.steps, k.vals, k.walls
FROM merged m LEFT JOIN sketch k USING (run_id, key_id, rank, attempt, segment)
"""


@dataclass(frozen=True)
class CompactionResult:
    """What one round did."""

    chunks_before: int
    chunks_after: int

    @property
    def merged(self) -> int:
        """Chunks removed by merging."""
        return self.chunks_before - self.chunks_after


async def compact_once(pool: AsyncConnectionPool, max_series: int = 2000) -> CompactionResult:
    """One round over at most ``max_series`` series; returns chunk counts."""
    with db_errors():
        async with pool.connection() as conn:
            got = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)))\
                .fetchone()
            if not got or not got[0]:
                return CompactionResult(0, 0)  # another replica is compacting
            try:
                async with conn.transaction():
                    await conn.execute(_CREATE_TMP)
                    await conn.execute(_PICK, {"series": max_series})
                    # Real row counts for the planner (temp tables have no statistics).
                    await conn.execute("ANALYZE compact_ids")
                    cur = await conn.execute(_TAKE)
                    before = cur.rowcount
                    await conn.execute("ANALYZE compact_src")
                    cur = await conn.execute(_MERGE)
                    after = cur.rowcount
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
                await conn.commit()
    return CompactionResult(max(before, 0), max(after, 0))


async def compact_all(pool: AsyncConnectionPool, max_series: int = 2000) -> CompactionResult:
    """Rounds until nothing is left to merge (bench and admin use)."""
    before = after = 0
    while True:
        result = await compact_once(pool, max_series)
        before += result.chunks_before
        after += result.chunks_after
        if result.merged <= 0:
            return CompactionResult(before, after)


class Compactor:
    """Runs a compaction round every ``interval_s`` seconds."""

    def __init__(self, pool: AsyncConnectionPool, interval_s: float, max_series: int) -> None:
        self._pool = pool
        self._interval_s = interval_s
        self._max_series = max_series
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the background task (no-op when the interval is 0)."""
        if self._interval_s > 0:
            self._task = asyncio.create_task(self._run(), name="compactor")

    async def stop(self) -> None:
        """Cancel the background task."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                result = await compact_once(self._pool, self._max_series)
                if result.chunks_before:
                    log.info("compactor.round", chunks_before=result.chunks_before,
                             chunks_after=result.chunks_after)
            except Exception as exc:  # the next round retries; never kill the server
                log.warning("compactor.failed", error=repr(exc))
