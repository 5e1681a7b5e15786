"""POST /runs/{id}/metrics: answered after commit, exactly once with writer_id + seq
(across retries, concurrent duplicates and a server restart), same rules as gRPC."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import httpx

from tests.http_support import API, client, log, new_run, ok, problem
from tests.support import ServerThread, count_points, iter_points
from tracker_server.config import Settings


def _batch(n: int, start: int = 0, **extra: Any) -> dict[str, Any]:
    return {"keys": ["loss", "acc"], "key_index": [i % 2 for i in range(n)],
            "steps": [start + i // 2 for i in range(n)], "values": [i * 0.5 for i in range(n)],
            **extra}


def test_committed_before_the_answer(server: ServerThread, hc: httpx.Client) -> None:
    rid = new_run(hc)["run_id"]
    assert log(hc, rid, **_batch(1000))["points_written"] == 1000
    assert count_points(server.running.conninfo, rid) == 1000  # durable when answered


def test_retries_with_writer_and_seq_are_written_once(server: ServerThread, hc: httpx.Client,
                                                      settings: Settings) -> None:
    rid = new_run(hc)["run_id"]
    first = log(hc, rid, writer_id="trainer-0", seq=1, **_batch(10))
    assert first == {"committed_through_seq": 1, "points_written": 10}
    replay = log(hc, rid, writer_id="trainer-0", seq=1, **_batch(10))
    assert replay == {"committed_through_seq": 1, "points_written": 0}
    # Concurrent duplicates of the next batch: one of them writes it.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(
            lambda _: client(server).post(f"{API}/runs/{rid}/metrics", json={
                "writer_id": "trainer-0", "seq": 2, **_batch(10, start=100)}).json(),
            range(4)))
    assert sorted(r["points_written"] for r in results) == [0, 0, 0, 10]
    assert {r["committed_through_seq"] for r in results} == {2}
    # Another writer (another rank) has its own sequence.
    other = log(hc, rid, writer_id="trainer-1", rank=1, seq=1, **_batch(4))
    assert other == {"committed_through_seq": 1, "points_written": 4}
    assert count_points(server.running.conninfo, rid) == 24
    # An older seq after a newer one is a replay too.
    assert log(hc, rid, writer_id="trainer-0", seq=1, **_batch(10))["points_written"] == 0
    # The offsets are in the database: another server (a replica, or this one restarted)
    # drops the replay too.
    again = ServerThread(settings)
    try:
        with client(again) as c:
            assert log(c, rid, writer_id="trainer-0", seq=2, **_batch(10, start=100))[
                "points_written"] == 0
            assert log(c, rid, writer_id="trainer-0", seq=3, **_batch(2, start=200)) == {
                "committed_through_seq": 3, "points_written": 2}
        assert count_points(again.running.conninfo, rid) == 26
    finally:
        again.stop()


def test_unsequenced_batches_and_empty_ones(server: ServerThread, hc: httpx.Client) -> None:
    rid = new_run(hc)["run_id"]
    assert log(hc, rid, points=[]) == {"committed_through_seq": 0, "points_written": 0}
    assert log(hc, rid, keys=[], key_index=[], steps=[], values=[])["points_written"] == 0
    log(hc, rid, **_batch(6))
    log(hc, rid, **_batch(6))  # seq 0: no retry protection, written twice
    assert count_points(server.running.conninfo, rid) == 12
    # An empty sequenced batch consumes its seq.
    assert log(hc, rid, writer_id="w", seq=1, points=[]) == {"committed_through_seq": 1,
                                                             "points_written": 0}
    assert log(hc, rid, writer_id="w", seq=2, **_batch(2))["committed_through_seq"] == 2


def test_rank_attempt_and_bad_writers(server: ServerThread, hc: httpx.Client) -> None:
    rid = new_run(hc)["run_id"]
    log(hc, rid, writer_id="r3", rank=3, seq=1,
        points=[{"key": "x", "step": 1, "value": 2.0, "wall_time_ns": 9}])
    assert list(iter_points(server.running.conninfo, rid)) == [("x", 3, 1, 2.0, 9)]
    url = f"{API}/runs/{rid}/metrics"
    future = problem(hc.post(url, json={"attempt": 1, **_batch(2)}), 412)
    assert "resume" in future["detail"]
    assert problem(hc.post(url, json={"rank": -1, **_batch(2)}), 400)["errors"][0][
        "field"] == "rank"
    problem(hc.post(url, json={"writer_id": "x" * 300, "seq": 1, **_batch(2)}), 400)
    problem(hc.post(f"{API}/runs/not-a-run/metrics", json=_batch(2)), 400)
    too_long = problem(hc.post(url, json={**_batch(2), "keys": ["k" * 300, "acc"]}), 400)
    assert too_long["errors"][0]["field"] == "keys[0]"
    ok(hc.get(f"{API}/runs/{rid}/metrics"))
