"""Exactly-once ingest through the real stream into real PostgreSQL."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import psycopg

from tests.support import (
    Api,
    ServerThread,
    batch_req,
    columns,
    count_points,
    open_req,
    run_stream,
)
from tracker_server.config import Settings
from tracker_server.storage.points_export import materialize_points


def _batches(n_batches: int, per: int, keys: int = 10, offset: int = 0) -> list:
    out = []
    for b in range(n_batches):
        idx = np.arange(per)
        step = offset + b * (per // keys) + idx // keys
        out.append(columns([f"k{i}" for i in range(keys)], idx % keys, step, np.sin(step)))
    return out


def test_three_concurrent_writers_100k_points_each(api: Api, database_url: str) -> None:
    run_id = api.new_run()
    results: dict[str, list] = {}

    def writer(name: str) -> None:
        reqs = [open_req(run_id, name)]
        reqs += [batch_req(i + 1, c) for i, c in enumerate(_batches(50, 2000))]
        results[name] = run_stream(api, reqs, timeout=60)

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    for name in ("w0", "w1", "w2"):
        assert results[name][-1].ack.committed_through_seq == 50
    assert count_points(database_url, run_id) == 300_000
    with psycopg.connect(database_url) as conn:
        materialize_points(conn, [run_id])
        # every (writer's) point is present exactly once: 3 copies of each (key, step)
        dup = conn.execute(
            "SELECT count(*) FROM (SELECT key, step, count(*) c FROM metric_points "
            "WHERE run_id = %s GROUP BY key, step) s WHERE c <> 3", (run_id,)
        ).fetchone()
        offsets = conn.execute(
            "SELECT writer_id, committed_seq FROM writer_offsets WHERE run_id = %s "
            "ORDER BY writer_id", (run_id,)
        ).fetchall()
    assert dup == (0,)
    assert offsets == [("w0", 50), ("w1", 50), ("w2", 50)]


def test_replayed_batches_are_not_duplicated(api: Api, database_url: str) -> None:
    run_id = api.new_run()
    b = _batches(3, 1000)
    first = run_stream(api, [open_req(run_id, "w"), batch_req(1, b[0]), batch_req(2, b[1])])
    assert first[-1].ack.committed_through_seq == 2
    # Reconnect and resend everything (a client that lost the acks).
    second = run_stream(
        api, [open_req(run_id, "w"), batch_req(1, b[0]), batch_req(2, b[1]), batch_req(3, b[2])]
    )
    assert second[0].opened.committed_seq == 2
    assert second[-1].ack.committed_through_seq == 3
    assert count_points(database_url, run_id) == 3000


def _slow_settings(settings: Settings) -> Settings:
    return replace(settings, flush_interval_ms=1500, flush_bytes=1 << 30,
                   memory_budget_bytes=1 << 30)


def test_reconnect_while_first_stream_holds_unflushed_batches(
    settings: Settings, database_url: str
) -> None:
    """Same server: stream A's batches are still buffered when stream B resends them."""
    srv = ServerThread(_slow_settings(settings))
    api = Api(srv.address)
    try:
        run_id = api.new_run()
        b = _batches(8, 500)
        gate = threading.Event()

        def stream_a():
            yield open_req(run_id, "w")
            for i in range(5):
                yield batch_req(i + 1, b[i])
            gate.wait(10)

        call_a = api.ingest.Stream(stream_a(), timeout=30)
        assert next(call_a).opened.committed_seq == 0
        time.sleep(0.3)  # A's five batches are received and buffered, not flushed
        assert count_points(database_url, run_id) == 0
        resend = [batch_req(i + 1, b[i]) for i in range(8)]
        resp_b = run_stream(api, [open_req(run_id, "w"), *resend])
        assert resp_b[0].opened.committed_seq == 0
        assert resp_b[-1].ack.committed_through_seq == 8
        gate.set()
        list(call_a)
        assert count_points(database_url, run_id) == 8 * 500
    finally:
        api.close()
        srv.stop()


def test_stale_buffer_on_another_server_is_fenced(settings: Settings, database_url: str) -> None:
    """Two servers, one database: a stale server's buffered batches never commit twice."""
    slow = ServerThread(_slow_settings(settings))
    fast = ServerThread(settings)
    api_slow, api_fast = Api(slow.address), Api(fast.address)
    try:
        run_id = api_fast.new_run()
        b = _batches(6, 500)
        gate = threading.Event()

        def stale():
            yield open_req(run_id, "w")
            for i in range(4):
                yield batch_req(i + 1, b[i])
            gate.wait(10)

        call = api_slow.ingest.Stream(stale(), timeout=30)
        assert next(call).opened.committed_seq == 0
        time.sleep(0.3)
        # The client gave up on the slow server and resent everything to the fast one.
        resend = [batch_req(i + 1, b[i]) for i in range(6)]
        resp = run_stream(api_fast, [open_req(run_id, "w"), *resend])
        assert resp[-1].ack.committed_through_seq == 6
        assert count_points(database_url, run_id) == 3000
        gate.set()
        tail = list(call)
        # The slow server flushed: its batches were all committed already, nothing added.
        assert count_points(database_url, run_id) == 3000
        assert tail and tail[-1].ack.committed_through_seq >= 4
    finally:
        api_slow.close()
        api_fast.close()
        slow.stop()
        fast.stop()


def test_ack_only_after_rows_are_visible_elsewhere(api: Api, database_url: str) -> None:
    run_id = api.new_run()
    batches = _batches(20, 1000)
    seen: list[tuple[int, int]] = []

    def reqs():
        yield open_req(run_id, "w")
        for i, c in enumerate(batches):
            yield batch_req(i + 1, c)
            time.sleep(0.005)

    with psycopg.connect(database_url, autocommit=True) as conn:
        for resp in api.ingest.Stream(reqs(), timeout=60):
            if resp.WhichOneof("kind") == "ack":
                acked = resp.ack.committed_through_seq
                row = conn.execute(
                    "SELECT coalesce(sum(n), 0) FROM metric_chunks WHERE run_id = %s", (run_id,)
                ).fetchone()
                assert row is not None
                seen.append((acked, int(row[0])))
    assert seen, "no acks received"
    for acked, visible in seen:
        assert visible >= acked * 1000, f"ack {acked} sent before its rows were visible"
    assert seen[-1][0] == 20


def test_unary_log_metrics_is_idempotent(api: Api, database_url: str) -> None:
    from tracker_proto.v1 import ingest_pb2

    run_id = api.new_run()
    cols = _batches(1, 100)[0]
    writer = ingest_pb2.Open(run_id=run_id, writer_id="script")
    req = ingest_pb2.LogMetricsRequest(writer=writer, batch=ingest_pb2.Batch(seq=1, columns=cols))
    first = api.ingest.LogMetrics(req, timeout=10)
    again = api.ingest.LogMetrics(req, timeout=10)
    assert (first.committed_through_seq, first.points_written) == (1, 100)
    assert (again.committed_through_seq, again.points_written) == (1, 0)
    unseq = ingest_pb2.LogMetricsRequest(writer=writer, batch=ingest_pb2.Batch(seq=0, columns=cols))
    assert api.ingest.LogMetrics(unseq, timeout=10).points_written == 100
    assert count_points(database_url, run_id) == 200
