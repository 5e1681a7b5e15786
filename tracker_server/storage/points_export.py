"""Stored points as plain rows: what the ``metric_points`` view gave before the codec.

Chunk payloads are zstd frames (``domain.codec``) that plain SQL cannot decode, so
migration 0013 dropped the view. ``materialize_points`` decodes the chunks of some runs
(either layout) in Python and loads them, with one binary COPY per run, into a
temporary table of the session; a temporary view named ``metric_points`` with the old
view's columns (run_id, key, rank, attempt, step, value, wall_ns) sits on top, so the
SQL an analyst (or a test) wrote against the view runs unchanged in that session.
``tracker-server points`` (``points_cli``) writes the same rows as CSV.

One row per stored point, earlier attempts and overwritten steps included (resolution
of duplicates is the read API's job), in write order (chunk_id, then position).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from psycopg import Connection

from tracker_server.storage.chunk_rows import CHUNK_COLUMNS, decode_chunk_rows
from tracker_server.storage.copy_binary import COPY_HEADER, COPY_TRAILER
from tracker_server.storage.numpy_arrays import use_numpy_arrays

_CREATE = """
DROP VIEW IF EXISTS pg_temp.metric_points;
DROP TABLE IF EXISTS pg_temp.metric_points_decoded;
CREATE TEMP TABLE metric_points_decoded (
    run_id uuid, key_id integer, rank integer, attempt integer, seq bigint,
    step bigint, value float8, wall_ns bigint
);
CREATE TEMP VIEW metric_points AS
SELECT p.run_id, k.name AS key, p.rank, p.attempt, p.step, p.value, p.wall_ns
FROM pg_temp.metric_points_decoded p JOIN metric_keys k USING (key_id)
"""

_RUNS = "SELECT DISTINCT run_id FROM metric_chunks"

_RUN_CHUNKS = f"""
SELECT key_id, rank, attempt, chunk_id, {CHUNK_COLUMNS} FROM metric_chunks
WHERE run_id = %s ORDER BY key_id, rank, attempt, chunk_id
"""

_COPY = ("COPY pg_temp.metric_points_decoded (run_id, key_id, rank, attempt, seq, step, "
         "value, wall_ns) FROM STDIN (FORMAT BINARY)")

# One point: field count, then (length, value) per field, big-endian.
_ROW = np.dtype([
    ("nf", ">i2"), ("l_run", ">i4"), ("run", "V16"), ("l_key", ">i4"), ("key", ">i4"),
    ("l_rank", ">i4"), ("rank", ">i4"), ("l_att", ">i4"), ("att", ">i4"),
    ("l_seq", ">i4"), ("seq", ">i8"), ("l_step", ">i4"), ("step", ">i8"),
    ("l_val", ">i4"), ("val", ">u8"), ("l_wall", ">i4"), ("wall", ">i8"),
])


def _run_copy_data(run_id: uuid.UUID, rows: list[Any]) -> bytes:
    """Binary COPY data of one run's points (rows of ``_RUN_CHUNKS``)."""
    steps, values, wall = decode_chunk_rows(rows)
    sizes = np.array([len(s) for s in steps], dtype=np.int64)
    out = np.empty(int(sizes.sum()), dtype=_ROW)
    out["nf"] = 8
    for f, size in (("l_run", 16), ("l_key", 4), ("l_rank", 4), ("l_att", 4), ("l_seq", 8),
                    ("l_step", 8), ("l_val", 8), ("l_wall", 8)):
        out[f] = size
    out["run"] = np.frombuffer(run_id.bytes, dtype="V16")[0]
    meta = np.array([r[:3] for r in rows], dtype=np.int64).reshape(-1, 3)
    out["key"] = np.repeat(meta[:, 0], sizes)
    out["rank"] = np.repeat(meta[:, 1], sizes)
    out["att"] = np.repeat(meta[:, 2], sizes)
    out["seq"] = np.arange(out.shape[0], dtype=np.int64)
    if steps:
        out["step"] = np.concatenate(steps)
        # Bit patterns: NaN payloads and -0.0 reach the table as stored.
        out["val"] = np.concatenate(values).view(np.uint64)
        out["wall"] = np.concatenate(wall)
    return COPY_HEADER + out.tobytes() + COPY_TRAILER


def _runs(conn: Connection[Any], run_ids: Iterable[uuid.UUID | str] | None
          ) -> Iterator[uuid.UUID]:
    if run_ids is None:
        for (run,) in conn.execute(_RUNS).fetchall():
            yield run
    else:
        for run in run_ids:
            yield run if isinstance(run, uuid.UUID) else uuid.UUID(str(run))


def materialize_points(conn: Connection[Any],
                       run_ids: Iterable[uuid.UUID | str] | None = None) -> int:
    """(Re)create the session's temporary ``metric_points`` for ``run_ids`` (None: every
    run); returns the number of points loaded. Runs one run at a time, so memory is
    bounded by the largest run, not the database."""
    conn.execute(_CREATE)
    total = 0
    for run in _runs(conn, run_ids):
        cur = conn.cursor(binary=True)
        use_numpy_arrays(cur)
        cur.execute(_RUN_CHUNKS, (run,))
        rows = cur.fetchall()
        if not rows:
            continue
        data = _run_copy_data(run, rows)
        with conn.cursor() as c2, c2.copy(_COPY) as copy:
            copy.write(data)
        total += (len(data) - len(COPY_HEADER) - len(COPY_TRAILER)) // _ROW.itemsize
    conn.execute("ANALYZE pg_temp.metric_points_decoded")
    return total
