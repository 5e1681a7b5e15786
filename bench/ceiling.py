"""The write ceiling: the same points, one process, binary COPY straight into the schema.

No gRPC, no client, no server: the points ``bench ingest`` streamed are regenerated
(same seeds), grouped into flushes the way the server's coalescer would (a round of
one batch per stream until ``flush_points``), chunked with the server's own
``build_chunks``, encoded with its ``encode_chunks`` and written with its COPY
statement, one transaction per flush. Whatever the end-to-end path adds on top of
this is the cost of transport, validation, coalescing and bookkeeping.

With ``connections`` > 1 the flushes are spread over that many connections writing at
once, like the server's flush lanes (``bench ingest`` sets it to the server's lanes x
workers, the most COPYs the server runs at the same time).

``python -m bench ceiling`` runs it alone (embedded PostgreSQL unless DATABASE_URL).
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import psycopg

from bench.workload import StreamPoints, Workload

DEFAULT_FLUSH_POINTS = (8 << 20) // 28
"""Points in one flush: the server's default TRACKER_FLUSH_BYTES / bytes per point."""


@dataclass
class CeilingResult:
    """Figures of one ceiling measurement."""

    points: int
    flushes: int
    chunk_rows: int
    seconds: float
    """Wall time of the pipelined build + encode + COPY + commit (generation excluded)."""
    build_s: float
    encode_s: float
    copy_commit_s: float
    disk_bytes: int
    connections: int = 1
    passes_points_per_s: list[float] = field(default_factory=list)
    """Every pass of a repeated measurement (the result is the fastest)."""

    @property
    def points_per_s(self) -> float:
        """The ceiling."""
        return self.points / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        """For the JSON report."""
        return {
            "ceiling_points_per_s": self.points_per_s,
            "ceiling_connections": self.connections,
            "ceiling_passes_points_per_s": self.passes_points_per_s,
            "ceiling_points": self.points,
            "ceiling_flushes": self.flushes,
            "ceiling_chunk_rows": self.chunk_rows,
            "ceiling_seconds": self.seconds,
            "ceiling_build_s": self.build_s,
            "ceiling_encode_s": self.encode_s,
            "ceiling_copy_commit_s": self.copy_commit_s,
            "ceiling_copy_only_points_per_s": (
                self.points / self.copy_commit_s if self.copy_commit_s else 0.0),
            "ceiling_disk_bytes_per_point": self.disk_bytes / self.points if self.points else 0.0,
        }


def relation_bytes(conn: psycopg.Connection[Any], table: str = "metric_chunks") -> int:
    """Table + TOAST + indexes, in bytes (of every shard, on Citus: the coordinator's
    table itself is an empty shell there)."""
    from tracker_server.storage.citus import is_citus

    size = "citus_total_relation_size" if is_citus(conn) else "pg_total_relation_size"
    row = conn.execute(f"SELECT {size}(%s::regclass)", (table,)).fetchone()  # constant
    return int(row[0]) if row else 0


def resolve_keys(conn: psycopg.Connection[Any], names: list[str]) -> np.ndarray:
    """Global key ids of ``names`` (created when missing), as an int32 lookup table."""
    conn.execute(
        "INSERT INTO metric_keys (name) SELECT unnest(%s::text[]) ORDER BY 1 "
        "ON CONFLICT (name) DO NOTHING", (names,))
    rows = conn.execute("SELECT name, key_id FROM metric_keys WHERE name = ANY(%s::text[])",
                        (names,)).fetchall()
    ids = dict(rows)
    conn.commit()
    return np.array([ids[n] for n in names], dtype=np.int32)


def _point_batch(cls: Any, seq: int, names: list[str], cols: Any, key_lut: np.ndarray) -> Any:
    """A validated batch with its keys resolved, as the engine's resolve_keys leaves it."""
    batch = cls(seq, names, cols.key_index, cols.steps, cols.values, cols.wall_ns)
    batch.table_ids = key_lut
    return batch


def measure(conninfo: str, workload: Workload, streams: int, steps_per_stream: int,
            flush_points: int = DEFAULT_FLUSH_POINTS, cleanup: bool = True,
            progress: Any = None, connections: int = 1, repeat: int = 1) -> CeilingResult:
    """Write ``streams x steps_per_stream x keys`` points; time only the write path.

    The points are generated first (not timed). The flushes are dealt round-robin to
    ``connections`` lanes; in each lane one thread chunks and encodes flush after flush
    while another COPYs the previous one on the lane's own connection, one transaction
    per flush: the overlap of Python and PostgreSQL work the server's flush lanes have,
    in one process.

    With ``repeat`` > 1 the same points are written that many times (deleted in
    between) and the fastest pass is the result: one pass of 10M points takes about a
    second, so a checkpoint or a scheduler hiccup moved a single pass by up to 40%
    (7.0-11.2 M points/s in six runs of one day); every pass is kept in ``passes_points_per_s``.
    """
    from tracker_server.domain.points import PointBatch, WriterInfo, WriterKey

    run_ids = [uuid.uuid4() for _ in range(streams)]
    writers = [WriterInfo(WriterKey(r, f"ceiling:{i}"), 0, 0) for i, r in enumerate(run_ids)]
    gens = [StreamPoints(workload, i) for i in range(streams)]
    names = workload.key_names()
    spb = workload.steps_per_batch
    with psycopg.connect(conninfo) as conn:
        key_lut = resolve_keys(conn, names)
        flushes: list[tuple[int, list[tuple[Any, Any]]]] = []
        step, seq = 0, 0
        while step < steps_per_stream:
            # One flush: rounds of one batch per stream, like streams feeding a coalescer.
            batches: list[tuple[Any, Any]] = []
            n_flush = 0
            while step < steps_per_stream and n_flush < flush_points:
                nsteps = min(spb, steps_per_stream - step)
                seq += 1
                for w, g in zip(writers, gens, strict=True):
                    c = g.batch(step, nsteps)
                    batches.append((w, _point_batch(PointBatch, seq, names, c, key_lut)))
                    n_flush += c.n
                step += nsteps
            flushes.append((n_flush, batches))
        before = relation_bytes(conn)
        conn.commit()
        passes: list[CeilingResult] = []
        disk_bytes = 0
        for i in range(max(1, repeat)):
            if i:
                conn.execute("DELETE FROM metric_chunks WHERE run_id = ANY(%s)", (run_ids,))
                conn.commit()
            passes.append(_timed_pass(conninfo, conn, flushes, connections,
                                      progress if i == 0 else None))
            if i == 0:  # later passes write beside the first one's dead rows
                disk_bytes = relation_bytes(conn) - before
        if cleanup:
            conn.execute("DELETE FROM metric_chunks WHERE run_id = ANY(%s)", (run_ids,))
            conn.commit()
    best = max(passes, key=lambda r: r.points_per_s)
    return replace(best, disk_bytes=disk_bytes,
                   passes_points_per_s=[r.points_per_s for r in passes])


def _timed_pass(conninfo: str, conn: psycopg.Connection[Any],
                flushes: list[tuple[int, list[tuple[Any, Any]]]], connections: int,
                progress: Any) -> CeilingResult:
    """One timed write of ``flushes`` (see :func:`measure`)."""
    from tracker_server.domain.chunking import build_chunks
    from tracker_server.storage.copy_binary import encode_chunks
    from tracker_server.storage.metric_store import _COPY_SQL

    timing = {"build": 0.0, "encode": 0.0, "copy": 0.0}
    rows = [0]
    done = [0]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def produce(mine: list[tuple[int, list[tuple[Any, Any]]]],
                ready: queue.Queue[tuple[int, bytes | memoryview] | None]) -> None:
        try:
            for n_flush, batches in mine:
                t0 = time.perf_counter()
                chunks, _summaries = build_chunks(batches)
                t1 = time.perf_counter()
                payload = encode_chunks(chunks)
                with lock:
                    timing["build"] += t1 - t0
                    timing["encode"] += time.perf_counter() - t1
                    rows[0] += chunks.rows
                ready.put((n_flush, payload))
        finally:
            ready.put(None)

    def consume(lane_conn: psycopg.Connection[Any],
                ready: queue.Queue[tuple[int, bytes | memoryview] | None]) -> None:
        try:
            while (item := ready.get()) is not None:
                n_flush, payload = item
                t2 = time.perf_counter()
                with (lane_conn.transaction(), lane_conn.cursor() as cur,
                      cur.copy(_COPY_SQL) as copy):
                    copy.write(payload)
                with lock:
                    timing["copy"] += time.perf_counter() - t2
                    done[0] += n_flush
                    if progress is not None:
                        progress(done[0])
        except BaseException as exc:  # re-raised by the main thread
            errors.append(exc)

    lanes = max(1, connections)
    lane_conns = [conn] + [psycopg.connect(conninfo) for _ in range(lanes - 1)]
    threads = []
    for i, lane_conn in enumerate(lane_conns):
        ready: queue.Queue[tuple[int, bytes | memoryview] | None] = queue.Queue(maxsize=2)
        threads.append(threading.Thread(target=produce, args=(flushes[i::lanes], ready),
                                        name=f"ceiling-encoder-{i}", daemon=True))
        threads.append(threading.Thread(target=consume, args=(lane_conn, ready),
                                        name=f"ceiling-copy-{i}", daemon=True))
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    for extra in lane_conns[1:]:
        extra.close()
    if errors:
        raise errors[0]
    points = done[0]
    copy_s = timing["copy"] / lanes  # per connection, as they overlap
    return CeilingResult(points, len(flushes), rows[0], seconds,
                         timing["build"], timing["encode"], copy_s, 0, lanes)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench ceiling``: the COPY ceiling alone."""
    p = argparse.ArgumentParser(prog="python -m bench ceiling", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=10_000_000, help="total points")
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--keys", type=int, default=20)
    p.add_argument("--batch-points", type=int, default=2000)
    p.add_argument("--flush-points", type=int, default=DEFAULT_FLUSH_POINTS)
    p.add_argument("--connections", type=int, default=1,
                   help="COPY connections (lanes) writing at the same time (default 1)")
    p.add_argument("--repeat", type=int, default=3,
                   help="write the points this many times, report the fastest (default 3)")
    p.add_argument("--database-url", help="default: DATABASE_URL, else embedded PostgreSQL")
    p.add_argument("--json", metavar="PATH", help="write the figures to this file")
    args = p.parse_args(argv)
    from bench.environment import Database
    from bench.report import write_json

    wl = Workload(keys=args.keys, batch_points=args.batch_points)
    steps = wl.steps_for(args.points // args.streams)
    with Database(args.database_url) as db:
        res = measure(db.conninfo, wl, args.streams, steps, args.flush_points,
                      connections=args.connections, repeat=args.repeat)
    out = {**res.as_dict(), "streams": args.streams, **wl.as_dict(),
           "flush_points": args.flush_points}
    for k, v in out.items():
        print(f"{k:34} {v:,.3f}" if isinstance(v, float) else f"{k:34} {v}")
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
