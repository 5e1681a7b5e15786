"""Background compaction: merge small chunks of a (run, key, rank, attempt) series.

Small chunks are merged only with their neighbours between two big chunks of the same
series, and the merged chunk takes the highest chunk_id of the chunks it replaces, so the
order of writes that reads use to resolve a step logged twice is unchanged. Points keep
their order (chunk_id, then position). Everything happens in one transaction per round:
readers see the old chunks or the merged one, never both; ingest only inserts new chunks
and never waits on the compactor. A session advisory lock keeps replicas from
compacting at the same time. The small chunks (either layout: arrays from before
migration 0013, or codec payloads) come back from the DELETE to Python, which merges
them with numpy and writes one codec payload per merged chunk; a merged chunk big enough
for a min/max sketch gets one from ``domain.sketch.build_sketches``, the flush's own
function, so long low-frequency series keep the fast downsampled reads too.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog
from psycopg_pool import AsyncConnectionPool

from tracker_server.domain import codec
from tracker_server.domain.chunking import MAX_CHUNK_POINTS
from tracker_server.domain.sketch import build_sketches
from tracker_server.storage.chunk_rows import CHUNK_COLUMNS, decode_chunk_rows
from tracker_server.storage.copy_binary import ENCODING_CODEC_V1
from tracker_server.storage.errors import db_errors
from tracker_server.storage.numpy_arrays import use_numpy_arrays

log = structlog.get_logger(__name__)

SMALL_CHUNK_POINTS = 512  # must match the partial index of migration 0005
_LOCK_KEY = 7_433_611_592_002

MERGED_TARGET_POINTS = MAX_CHUNK_POINTS
"""A segment's small chunks are taken (in chunk_id order) while the points taken before
each one stay below this, so a merged chunk holds at most this plus one small chunk,
like a flush's chunks (zoomed reads fetch whole chunks); the rest of a long segment is
merged by the next round. Also bounds a round's memory: the merge happens in Python."""

_CREATE_TMP = """
CREATE TEMP TABLE IF NOT EXISTS compact_ids (
    run_id uuid, key_id integer, rank integer, attempt integer, segment bigint,
    chunk_id bigint
) ON COMMIT DELETE ROWS
"""

# Series with at least two small chunks. Within a series, big chunks split the small
# ones into segments (segment = id of the last big chunk before them); each segment with
# two or more small chunks is merged (its first chunks, up to MERGED_TARGET_POINTS).
# Window functions instead of joins between CTEs: the planner estimates CTEs at one row
# and picked a nested loop that made a round of 22k chunks take a minute (quadratic).
# Metadata only here; payloads and arrays are not touched.
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
           sum(n) OVER w - n AS before
    FROM seg
    WHERE n < {SMALL_CHUNK_POINTS}
    WINDOW w AS (PARTITION BY run_id, key_id, rank, attempt, segment ORDER BY chunk_id)
),
taken AS (
    SELECT *, count(*) OVER (PARTITION BY run_id, key_id, rank, attempt, segment) AS k
    FROM small
    WHERE before < {MERGED_TARGET_POINTS}
)
INSERT INTO compact_ids
SELECT run_id, key_id, rank, attempt, segment, chunk_id FROM taken WHERE k >= 2
"""

# With compact_ids analysed, this is one primary-key probe per chunk. The points go to
# Python (either layout, see chunk_rows), which merges and encodes them.
_TAKE = f"""
DELETE FROM metric_chunks c USING compact_ids d
WHERE c.run_id = d.run_id AND c.key_id = d.key_id AND c.rank = d.rank
  AND c.attempt = d.attempt AND c.chunk_id = d.chunk_id
RETURNING c.run_id, c.key_id, c.rank, c.attempt, d.segment, c.chunk_id,
          {", ".join("c." + col.strip() for col in CHUNK_COLUMNS.split(","))}
"""

# The merged chunk keeps the highest chunk_id of the chunks it replaces.
_INSERT = """
INSERT INTO metric_chunks (run_id, key_id, rank, attempt, chunk_id, first_step, last_step, n,
                           encoding, payload, sketch_payload)
OVERRIDING SYSTEM VALUE
SELECT * FROM unnest(%s::uuid[], %s::int[], %s::int[], %s::int[], %s::int8[], %s::int8[],
                     %s::int8[], %s::int[], %s::smallint[], %s::bytea[], %s::bytea[])
"""


@dataclass
class _Merged:
    """Merged chunk rows of one round, as the columns of ``_INSERT``."""

    run_ids: list[uuid.UUID]
    key_ids: list[int]
    ranks: list[int]
    attempts: list[int]
    chunk_ids: list[int]
    first_steps: list[int]
    last_steps: list[int]
    n: list[int]
    payloads: list[bytes]
    sketches: list[bytes | None]

    def params(self) -> tuple[Any, ...]:
        rows = len(self.n)
        return (self.run_ids, self.key_ids, self.ranks, self.attempts, self.chunk_ids,
                self.first_steps, self.last_steps, self.n, [ENCODING_CODEC_V1] * rows,
                self.payloads, self.sketches)


def merge_rows(rows: list[tuple[Any, ...]]) -> _Merged:
    """Rows of ``_TAKE`` -> one merged, encoded chunk per segment: points in write order
    (chunk_id, then position), a min/max sketch (``domain.sketch``, the flush's own
    function) when the merged chunk is big enough and its steps strictly increase."""
    segments: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for row in rows:
        segments.setdefault(tuple(row[:5]), []).append(row)
    keys = list(segments)
    ordered = [r for k in keys for r in sorted(segments[k], key=lambda r: int(r[5]))]
    steps_l, values_l, wall_l = decode_chunk_rows(ordered)
    sizes = np.array([sum(len(s) for s in steps_l[i:j]) for i, j in _bounds(
        [len(segments[k]) for k in keys])], dtype=np.int64)
    steps = np.concatenate(steps_l) if steps_l else np.zeros(0, np.int64)
    values = np.concatenate(values_l) if values_l else np.zeros(0, np.float64)
    wall = np.concatenate(wall_l) if wall_l else np.zeros(0, np.int64)
    starts = np.cumsum(sizes) - sizes
    sk = build_sketches(steps, values, wall, starts, sizes)
    out = _Merged([], [], [], [], [], [], [], [], [], [])
    for i, key in enumerate(keys):
        a, n = int(starts[i]), int(sizes[i])
        seg_steps = steps[a : a + n]
        out.run_ids.append(key[0])
        out.key_ids.append(int(key[1]))
        out.ranks.append(int(key[2]))
        out.attempts.append(int(key[3]))
        out.chunk_ids.append(max(int(r[5]) for r in segments[key]))
        out.first_steps.append(int(seg_steps.min()) if n else 0)
        out.last_steps.append(int(seg_steps.max()) if n else 0)
        out.n.append(n)
        out.payloads.append(codec.encode(seg_steps, values[a : a + n], wall[a : a + n]))
        sk_n, sk_a = int(sk.n[i]), int(sk.starts[i])
        out.sketches.append(None if sk_n < 0 else codec.encode(
            sk.steps[sk_a : sk_a + sk_n], sk.values[sk_a : sk_a + sk_n],
            sk.wall_ns[sk_a : sk_a + sk_n]))
    return out


def _bounds(counts: list[int]) -> list[tuple[int, int]]:
    """[start, end) of consecutive groups of ``counts`` items."""
    out, at = [], 0
    for c in counts:
        out.append((at, at + c))
        at += c
    return out


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
                    cur = conn.cursor(binary=True)
                    use_numpy_arrays(cur)
                    await cur.execute(_TAKE)
                    rows = await cur.fetchall()
                    before = after = 0
                    if rows:
                        # Decoding, merging and encoding are CPU work: off the event loop.
                        merged = await asyncio.to_thread(merge_rows, rows)
                        await conn.execute(_INSERT, merged.params())
                        before, after = len(rows), len(merged.n)
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
