"""The compactor merges small chunks without changing what reads return."""

from __future__ import annotations

import asyncio

import numpy as np
import psycopg
from psycopg_pool import AsyncConnectionPool

from tests.support import Api, ServerThread, batch_req, columns, open_req, run_stream
from tracker_server.storage.compactor import compact_all
from tracker_server.storage.points_export import materialize_points

# Every stored point in write order (chunk_id, then position: materialize_points loads
# them in that order per key, rank and attempt).
_POINTS = """
SELECT k.name, p.rank, p.attempt, p.step, p.value, p.wall_ns
FROM pg_temp.metric_points_decoded p JOIN metric_keys k USING (key_id)
ORDER BY k.name, p.rank, p.attempt, p.seq
"""


def _snapshot(url: str, run_id: str) -> tuple[list, list, int]:
    with psycopg.connect(url) as conn:
        materialize_points(conn, [run_id])
        points = conn.execute(_POINTS).fetchall()
        summary = conn.execute(
            "SELECT * FROM run_metric_summary WHERE run_id = %s ORDER BY key_id", (run_id,)
        ).fetchall()
        row = conn.execute("SELECT count(*) FROM metric_chunks WHERE run_id = %s", (run_id,))
        chunks = row.fetchone()
    assert chunks is not None
    return points, summary, int(chunks[0])


def _send_acked_one_by_one(api: Api, reqs: list) -> int:
    """Stream ``reqs`` waiting for each batch's ack, so every batch is its own flush."""
    import threading

    acked = threading.Condition()
    state = {"acked": 0}

    def gen():  # type: ignore[no-untyped-def]
        yield reqs[0]
        for r in reqs[1:]:
            yield r
            seq = r.batch.seq
            with acked:
                acked.wait_for(lambda seq=seq: state["acked"] >= seq, timeout=10)

    for resp in api.ingest.Stream(gen(), timeout=60):
        if resp.WhichOneof("kind") == "ack":
            with acked:
                state["acked"] = resp.ack.committed_through_seq
                acked.notify_all()
    return state["acked"]


def _compact(server: ServerThread) -> tuple[int, int]:
    async def go() -> tuple[int, int]:
        pool = AsyncConnectionPool(server.running.conninfo, min_size=1, max_size=1, open=False)
        await pool.open()
        try:
            result = await compact_all(pool, max_series=3)  # several rounds
            return result.chunks_before, result.chunks_after
        finally:
            await pool.close()

    return server.call(go())  # type: ignore[no-any-return]


def test_small_chunks_are_merged_and_reads_do_not_change(
    server: ServerThread, api: Api, database_url: str
) -> None:
    run_id = api.new_run()
    keys = ["a", "b", "c"]
    reqs = [open_req(run_id, "w", rank=1)]
    # 40 one-step batches, each flushed on its own: 3 one-point chunks per batch.
    # Step 7 is logged twice (later write wins on read), and one big chunk sits
    # in the middle of key "a": smalls before it must stay before it.
    seq = 0
    for step in [*range(20), 7, *range(20, 38)]:
        seq += 1
        reqs.append(batch_req(seq, columns(keys, [0, 1, 2], [step] * 3,
                                           np.array([step, -step, step / 3]) + 0.5 * (seq > 20))))
        if seq == 10:
            seq += 1
            big = np.arange(600)
            reqs.append(batch_req(seq, columns(["a"], np.zeros(600), 1000 + big, big)))
    assert _send_acked_one_by_one(api, reqs) == seq
    before = _snapshot(database_url, run_id)
    chunks_before, chunks_after = _compact(server)
    after = _snapshot(database_url, run_id)
    assert after[0] == before[0], "points or their order changed"
    assert after[1] == before[1], "summaries changed"
    assert after[2] < before[2]
    assert chunks_before - chunks_after == before[2] - after[2]
    # Idempotent: nothing left to merge.
    assert _compact(server) == (0, 0)
    assert _snapshot(database_url, run_id)[2] == after[2]
    with psycopg.connect(database_url) as conn:
        small = conn.execute(
            "SELECT k.name, count(*) FROM metric_chunks c JOIN metric_keys k USING (key_id) "
            "WHERE run_id = %s AND n < 512 GROUP BY 1 ORDER BY 1", (run_id,)
        ).fetchall()
    # b and c: one merged chunk each; a: one before its big chunk and one after it.
    assert dict(small) == {"a": 2, "b": 1, "c": 1}


def test_compaction_does_not_block_ingest(
    server: ServerThread, api: Api, database_url: str
) -> None:
    run_id = api.new_run()
    reqs = [open_req(run_id, "w")]
    for i in range(100):
        reqs.append(batch_req(i + 1, columns(["x"], [0], [i], [float(i)])))
    _send_acked_one_by_one(api, reqs)

    async def both() -> None:
        pool = AsyncConnectionPool(server.running.conninfo, min_size=1, max_size=2, open=False)
        await pool.open()
        try:
            await asyncio.gather(compact_all(pool), asyncio.to_thread(
                run_stream, api, [open_req(run_id, "w2")] +
                [batch_req(i + 1, columns(["x"], [0], [1000 + i], [1.0])) for i in range(100)]))
        finally:
            await pool.close()

    server.call(both())
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT sum(n) FROM metric_chunks WHERE run_id = %s", (run_id,))
        assert row.fetchone() == (200,)
