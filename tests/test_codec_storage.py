"""Encoded chunks in PostgreSQL (migration 0013): what the flush writes, that chunks in
the old array layout keep reading (series, export, summaries, compaction), the layout
constraint, and the plain-rows replacement of the metric_points view."""

from __future__ import annotations

import csv
import io
import struct
import subprocess
import sys
import uuid
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from tests.citus_support import BACKEND
from tests.query_support import log_points, new_experiment, new_run, query_stub, resume, series
from tests.support import Api, ServerThread, batch_req, columns, open_req
from tracker_proto.v1 import query_pb2 as q
from tracker_server.domain import codec
from tracker_server.storage.compactor import MERGED_TARGET_POINTS, compact_all
from tracker_server.storage.points_export import materialize_points

I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def _f(bits: int) -> float:
    return float(struct.unpack("<d", struct.pack("<Q", bits))[0])


def _bits(values: Any) -> list[int]:
    return np.asarray(values, dtype=np.float64).view(np.uint64).tolist()


def _sql(url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, args)
        return cur.fetchall() if cur.description else []


def _export(api: Api, run: str, key: str) -> tuple[list[int], list[float], list[int]]:
    msgs = list(query_stub(api).StreamMetricSeries(
        q.StreamMetricSeriesRequest(run_id=run, key=key)))
    return ([s for m in msgs for s in m.steps], [v for m in msgs for v in m.values],
            [w for m in msgs for w in m.wall_time_ns])


def _insert_array_chunk(url: str, run: str, key: str, attempt: int, steps: list[int],
                        values: list[float], wall: list[int]) -> None:
    """A chunk as written before migration 0013: three arrays, no payload (bound in
    binary, so NaN payloads reach the table)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO metric_keys (name) VALUES (%s) ON CONFLICT DO NOTHING", (key,))
        conn.execute(
            "INSERT INTO metric_chunks (run_id, key_id, rank, attempt, first_step, last_step, "
            "n, steps, \"values\", wall_ns) SELECT %s, key_id, 0, %s, %s, %s, %s, %b, %b, %b "
            "FROM metric_keys WHERE name = %s",
            (run, attempt, min(steps), max(steps), len(steps), steps, values, wall, key))


def test_flush_writes_payloads_bit_exact(api: Api, database_url: str) -> None:
    run = new_run(api, new_experiment(api))
    specials = [_f(0x7FF0000000000001), _f(0xFFF8DEADBEEF0001), -0.0, _f(1), float("inf"),
                float("-inf"), 1e308, -1e-300]
    steps = np.array([I64_MIN, -5, 0, 3, 2, 9, 10**15, I64_MAX], dtype=np.int64)
    wall = np.array([I64_MAX, I64_MIN, 0, -1, 7, 7, 6, 1], dtype=np.int64)
    big = np.arange(5000, dtype=np.int64)
    noisy = 1.0 / np.sqrt(1 + big / 1000) + np.random.default_rng(0).normal(0, 0.01, 5000)
    reqs = [open_req(run, "w"),
            batch_req(1, columns(["s", "big"], [0] * 8 + [1] * 5000,
                                 np.r_[steps, big], np.r_[specials, noisy],
                                 np.r_[wall, 1_700_000_000_000_000_000 + big * 1_000_000]))]
    assert list(api.ingest.Stream(iter(reqs), timeout=30))[-1].ack.committed_through_seq == 1
    rows = _sql(database_url, "SELECT k.name, c.encoding, c.steps IS NULL, c.payload, "
                "c.sketch_payload IS NOT NULL FROM metric_chunks c JOIN metric_keys k "
                "USING (key_id) WHERE run_id = %s ORDER BY 1", run)
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [("big", 1, True, True),
                                                          ("s", 1, True, False)]
    big_row, s_row = rows
    assert len(big_row[3]) < 8 * 5000  # at most 8 bytes per point, sketch not counted
    got = codec.decode(s_row[3])
    assert got.steps.tolist() == steps.tolist() and got.wall_ns.tolist() == wall.tolist()
    assert _bits(got.values) == _bits(specials)
    # Through the server: export and series keep every bit (resolved in step order).
    e_steps, e_values, e_wall = _export(api, run, "s")
    order = np.argsort(steps, kind="stable")
    assert e_steps == steps[order].tolist() and e_wall == wall[order].tolist()
    assert _bits(e_values) == _bits(np.array(specials)[order])
    b_steps, b_values, _ = _export(api, run, "big")
    assert b_steps == big.tolist() and _bits(b_values) == _bits(noisy)
    # A downsampled read takes the (encoded) sketch: the first and last point are exact.
    [down] = series(query_stub(api), [run], ["big"], max_points=100)
    assert down.downsampled and down.total_points == 5000
    assert _bits([down.values[0], down.values[-1]]) == _bits([noisy[0], noisy[-1]])


def test_chunks_in_the_old_layout_keep_reading(api: Api, server: ServerThread,
                                               database_url: str) -> None:
    """Arrays written before the codec (SQL insert of array columns), then new encoded
    chunks on top: series reads, the export, a summary recomputation and the compactor
    see both layouts as one series."""
    exp = new_experiment(api)
    run = new_run(api, exp, run_key="old")
    old_steps = list(range(0, 700))
    old_values = [_f(0x7FF0000000000001) if s == 3 else -0.0 if s == 4 else s / 7
                  for s in old_steps]
    _insert_array_chunk(database_url, run, "loss", 0, old_steps, old_values,
                        [s * 1000 for s in old_steps])
    _insert_array_chunk(database_url, run, "loss", 0, [700, 701], [1.5, 2.5], [1, 2])
    log_points(api, run, "loss", np.arange(702, 800), np.arange(702, 800) * 0.5)
    layouts = _sql(database_url, "SELECT encoding, count(*) FROM metric_chunks WHERE "
                   "run_id = %s GROUP BY 1 ORDER BY 1", run)
    assert layouts == [(0, 2), (1, 1)]

    want_values = [*old_values, 1.5, 2.5, *(np.arange(702, 800) * 0.5).tolist()]
    steps, values, wall = _export(api, run, "loss")
    assert steps == list(range(800)) and _bits(values) == _bits(want_values)
    assert wall[:700] == [s * 1000 for s in old_steps] and wall[700:702] == [1, 2]
    [full] = series(query_stub(api), [run], ["loss"], max_points=1000)
    assert not full.downsampled and list(full.steps) == list(range(800))
    assert _bits(full.values) == _bits(want_values)
    [down] = series(query_stub(api), [run], ["loss"], max_points=50)
    assert down.downsampled and down.total_points == 800

    # A resumed attempt that overlaps: the flush recomputes the summary from the stored
    # chunks, old and new layouts alike.
    assert resume(api, exp, "old") == 1
    log_points(api, run, "loss", [10, 11], [-100.0, 100.0], attempt=1)
    summary = _sql(database_url, "SELECT count, min_value, max_value FROM run_metric_summary "
                   "s JOIN metric_keys k USING (key_id) WHERE run_id = %s AND k.name = 'loss'",
                   run)
    # Attempt 1 supersedes attempt 0 from step 10 on: steps 0..9 of attempt 0 remain.
    assert summary == [(12, -100.0, 100.0)]

    # The compactor merges the small old-layout chunk with encoded neighbours.
    before = _export(api, run, "loss")

    async def compact() -> None:
        pool = AsyncConnectionPool(server.running.conninfo, min_size=1, max_size=1,
                                   open=False)
        await pool.open()
        try:
            await compact_all(pool)
        finally:
            await pool.close()

    log_points(api, run, "loss", [801], [9.0], attempt=1)
    server.call(compact())
    assert _export(api, run, "loss")[0] == before[0] + [801]
    left = _sql(database_url, "SELECT encoding, n FROM metric_chunks WHERE run_id = %s "
                "ORDER BY chunk_id", run)
    assert (0, 700) in left and all(e == 1 for e, n in left if n < 512)


def test_compactor_caps_merged_chunks(api: Api, server: ServerThread,
                                      database_url: str) -> None:
    run = new_run(api, new_experiment(api))
    per = 500
    count = MERGED_TARGET_POINTS // per + 8  # more small points than one merge takes
    for i in range(count):
        steps = np.arange(i * per, (i + 1) * per)
        log_points(api, run, "x", steps, steps * 0.25, writer=f"w{i}")

    async def compact() -> None:
        pool = AsyncConnectionPool(server.running.conninfo, min_size=1, max_size=1,
                                   open=False)
        await pool.open()
        try:
            await compact_all(pool)
        finally:
            await pool.close()

    server.call(compact())
    sizes = [r[0] for r in _sql(database_url, "SELECT n FROM metric_chunks WHERE run_id = %s "
                                "ORDER BY chunk_id", run)]
    assert sum(sizes) == count * per
    assert len(sizes) == 2 and max(sizes) <= MERGED_TARGET_POINTS + per
    steps, values, _ = _export(api, run, "x")
    assert steps == list(range(count * per)) and values == (np.arange(count * per) * 0.25
                                                            ).tolist()


def test_layout_constraint(api: Api, database_url: str) -> None:
    run = new_run(api, new_experiment(api))
    payload = codec.encode(np.array([1], np.int64), np.array([1.0]), np.array([1], np.int64))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO metric_keys (name) VALUES ('c') ON CONFLICT DO NOTHING")
        for cols, vals in (("encoding, payload, steps", (1, payload, [1])),  # both layouts
                           ("encoding", (1,)),  # encoded without a payload
                           ("encoding, payload", (2, payload))):  # unknown encoding
            marks = ", ".join(["%s"] * len(vals))
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute(
                    f"INSERT INTO metric_chunks (run_id, key_id, rank, attempt, first_step, "
                    f"last_step, n, {cols}) SELECT %s, key_id, 0, 0, 1, 1, 1, {marks} "
                    "FROM metric_keys WHERE name = 'c'", (run, *vals))
        storage = conn.execute(
            "SELECT attname, attstorage FROM pg_attribute WHERE attrelid = "
            "'metric_chunks'::regclass AND attname IN ('payload', 'sketch_payload') "
            "ORDER BY 1").fetchall()
    # zstd payloads: no TOAST compression on top (Citus refuses SET STORAGE on a
    # distributed table: there the default stays, see migration 0013).
    want = "x" if BACKEND == "citus" else "e"
    assert storage == [("payload", want), ("sketch_payload", want)]


def test_materialized_points_and_cli_export(api: Api, database_url: str) -> None:
    run = new_run(api, new_experiment(api))
    _insert_array_chunk(database_url, run, "a", 0, [1, 2], [0.5, -0.0], [10, 20])
    log_points(api, run, "a", [3, 2], [_f(0x7FF0000000000001), 7.0])
    log_points(api, run, "b", np.arange(100), np.arange(100) / 3)
    other = new_run(api, new_experiment(api))
    log_points(api, other, "a", [1], [1.0])
    with psycopg.connect(database_url) as conn, conn.cursor(binary=True) as cur:
        assert materialize_points(conn, [run]) == 104
        cur.execute("SELECT key, rank, attempt, step, value, wall_ns FROM metric_points "
                    "WHERE run_id = %s AND key = 'a'", (run,))
        rows = cur.fetchall()
        assert {r[0] for r in cur.execute("SELECT DISTINCT run_id FROM metric_points")} == {
            uuid.UUID(run)}
    assert [r[3] for r in rows] == [1, 2, 3, 2]  # write order
    assert _bits([r[4] for r in rows]) == _bits([0.5, -0.0, _f(0x7FF0000000000001), 7.0])
    assert [r[5] for r in rows] == [10, 20, 3000, 2000]

    proc = subprocess.run(
        [sys.executable, "-m", "tracker_server", "points", "--database-url", database_url,
         "--run", run, "--key", "a"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = list(csv.reader(io.StringIO(proc.stdout)))
    assert got[0] == ["run_id", "key", "rank", "attempt", "step", "value", "wall_ns"]
    assert [r[4:] for r in got[1:]] == [["1", "0.5", "10"], ["2", "-0", "20"],
                                        ["3", "NaN", "3000"], ["2", "7", "2000"]]
    bad = subprocess.run([sys.executable, "-m", "tracker_server", "points", "--database-url",
                          database_url, "--run", "not-a-uuid"], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "UUID" in bad.stderr
