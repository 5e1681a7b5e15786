"""``GET /metrics`` scraped from real servers while they ingest: an in-process server,
and ``tracker-server --workers 2`` as real processes, where every scrape (landing on
either worker) reports both workers and their counters add up to what was sent."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.client_support import wait_for
from tests.prometheus_support import by_worker, names, scrape, total
from tests.stream_writer import Writer
from tests.support import Api, ServerProcess, ServerThread, batch_req, columns, free_port, open_req
from tests.test_auth import make_key
from tracker_server.config import Settings
from tracker_server.domain.ingest import FlushReport
from tracker_server.http.prometheus import Exposition, Peers
from tracker_server.telemetry import setup_telemetry

pytestmark = pytest.mark.timeout(120)

POINTS = "tracker_ingest_points_total"


def test_counters_move_while_a_stream_ingests(settings: Settings) -> None:
    srv = ServerThread(settings)
    api = Api(srv.address)
    try:
        first = scrape(srv.http_url)
        assert total(first, POINTS) == 0  # there before the first flush, at 0
        assert total(first, "tracker_ingest_flush_failures_total") == 0
        assert total(first, "tracker_database_up") == 1
        assert total(first, "tracker_ingest_budget_bytes") == settings.memory_budget_bytes
        assert total(first, "tracker_metrics_workers") == 1
        run_id = api.new_run()
        # Two writers one after the other: the counter is scraped while each streams and
        # between them (a single fast stream can finish between two scrapes), where it
        # must read exactly the first writer's points: it counts commits as they happen.
        seen: list[float] = []
        between: list[float] = []
        for rank in (0, 1):
            writer = Writer(srv.address, run_id, rank=rank, batches=20, per=500)
            thread = threading.Thread(target=writer.run)
            thread.start()
            while thread.is_alive():
                seen.append(total(scrape(srv.http_url), POINTS))
                time.sleep(0.05)
            thread.join()
            assert writer.acked == 20, writer.errors
            # Counted after the commit, maybe just after the ack: wait for the last flush.
            done = (rank + 1) * 20 * 500
            wait_for(lambda n=done: total(scrape(srv.http_url), POINTS) == n, timeout=10)
            between.append(total(scrape(srv.http_url), POINTS))
            seen.append(between[-1])
        assert seen == sorted(seen)  # a counter never goes back
        assert between == [20 * 500, 40 * 500]  # the first writer's points before the second
        last = scrape(srv.http_url)
        assert total(last, "tracker_ingest_batches_total") == 40
        assert total(last, "tracker_ingest_flush_bytes_total") > 0
        assert total(last, "tracker_ingest_flush_duration_milliseconds_count", ok="true") > 0
        stream = "/tracker.v1.IngestService/Stream"
        assert total(last, "tracker_rpc_duration_milliseconds_count", rpc_method=stream,
                     code="OK") >= 1
        assert total(last, "tracker_rpc_duration_milliseconds_count",
                     rpc_method="/tracker.v1.ExperimentService/CreateRun", code="OK") == 1
        assert total(last, "tracker_ingest_streams") == 0
        assert total(last, "tracker_ingest_buffered_bytes") == 0
        # An error is a status code on the same histogram.
        httpx.get(f"{srv.http_url}/api/v1/runs/not-a-run", timeout=10)
        errors = scrape(srv.http_url)
        assert total(errors, "tracker_http_duration_milliseconds_count",
                     http_route="/api/v1/runs/{run_id}", http_response_status_code="400") == 1
        assert "worker" not in {k for s in errors for k in s.labels}  # a lone server
    finally:
        api.close()
        srv.stop()


def test_slow_downs_are_counted(settings: Settings) -> None:
    """A points rate limit makes the server send SlowDown; the counter follows."""
    srv = ServerThread(replace(settings, rate_points_per_s=1000))
    api = Api(srv.address)
    try:
        run_id = api.new_run()
        cols = columns(["loss"], [0] * 1500, range(1500), [0.5] * 1500)
        responses = list(api.ingest.Stream(
            iter([open_req(run_id, "w"), batch_req(1, cols)]), timeout=30))
        sent = sum(1 for r in responses if r.WhichOneof("kind") == "slow_down")
        assert sent >= 1
        assert total(scrape(srv.http_url), "tracker_ingest_slow_downs_total") == sent
    finally:
        api.close()
        srv.stop()


def test_a_key_can_be_required_for_metrics(settings: Settings, database_url: str) -> None:
    srv = ServerThread(replace(settings, auth="required", metrics_require_key=True))
    try:
        refused = httpx.get(f"{srv.http_url}/metrics", timeout=10)
        assert refused.status_code == 401
        assert "TRACKER_METRICS_REQUIRE_KEY" in refused.json()["detail"]
        bad = httpx.get(f"{srv.http_url}/metrics", timeout=10,
                        headers={"Authorization": "Bearer trk_000000000000_" + "x" * 43})
        assert bad.status_code == 401
        viewer = make_key(database_url, "viewer")  # the least role is enough
        assert total(scrape(srv.http_url, Authorization=f"Bearer {viewer}"),
                     "tracker_database_up") == 1
    finally:
        srv.stop()


def test_metrics_are_open_by_default_even_with_keys_required(settings: Settings) -> None:
    srv = ServerThread(replace(settings, auth="required"))
    try:
        assert total(scrape(srv.http_url), "tracker_metrics_workers") == 1
        assert httpx.get(f"{srv.http_url}/api/v1/runs", timeout=10).status_code == 401
    finally:
        srv.stop()


def test_metrics_off(settings: Settings) -> None:
    srv = ServerThread(replace(settings, metrics="off"))
    try:
        response = httpx.get(f"{srv.http_url}/metrics", timeout=10)
        assert response.status_code == 404
        assert "TRACKER_METRICS=off" in response.json()["detail"]
    finally:
        srv.stop()


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux (SO_REUSEPORT)")
def test_two_workers_report_the_whole_server(database_url: str) -> None:
    writers, batches, per = 8, 30, 500
    http = f"http://127.0.0.1:{free_port()}"
    srv = ServerProcess(database_url, TRACKER_WORKERS="2",
                        TRACKER_HTTP_LISTEN=http.removeprefix("http://"))
    srv.start(timeout=60)
    api = Api(srv.address)
    try:
        run_id = api.new_run()
        # Each writer has a connection of its own, so the kernel spreads them. Two waves
        # of four: between them the sum must be exactly the first wave's points (a wave
        # can end between two scrapes, so "it moved" is checked there).
        ws = [Writer(srv.address, run_id, rank, batches, per) for rank in range(writers)]
        sums: list[float] = []
        between: list[float] = []
        for wave in (ws[:writers // 2], ws[writers // 2:]):
            threads = [threading.Thread(target=w.run) for w in wave]
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                samples = scrape(http)  # a new connection each time: either worker answers
                assert set(by_worker(samples, POINTS)) == {"0", "1"}
                assert total(samples, "tracker_metrics_workers") == 2
                assert total(samples, "tracker_metrics_workers_missing") == 0
                sums.append(total(samples, POINTS))
                time.sleep(0.05)
            for t in threads:
                t.join()
            assert all(w.acked == batches for w in wave), [w.errors for w in wave]
            done = (ws.index(wave[-1]) + 1) * batches * per  # points of the waves so far
            wait_for(lambda n=done: total(scrape(http), POINTS) == n, timeout=10)
            between.append(total(scrape(http), POINTS))
            sums.append(between[-1])
        expected = writers * batches * per
        assert sums == sorted(sums), sums  # counters never go back
        assert between == [expected // 2, expected]
        final = scrape(http)
        per_worker = by_worker(final, POINTS)
        assert sum(per_worker.values()) == expected
        assert total(final, "tracker_ingest_batches_total") == writers * batches
        assert set(by_worker(final, "tracker_database_up").values()) == {1.0}
        assert set(by_worker(final, "target_info")) == {"0", "1"}
        assert "tracker_ingest_flush_duration_milliseconds_bucket" in names(final)
    finally:
        api.close()
        srv.terminate()


def test_a_worker_that_does_not_answer_is_counted_missing(tmp_path: Path) -> None:
    """Four workers' sockets in one loop: worker 1 holds its connection open without
    answering (frozen), worker 2 never started (restarting), worker 3 hangs up without
    its metrics: all three are left out within the timeout, and worker 0's report is
    still there."""

    async def main() -> tuple[list[Sample], float]:
        tel = [setup_telemetry("off", prometheus=True) for _ in range(2)]
        for i, t in enumerate(tel):
            t.on_flush(FlushReport(points=100 * (i + 1), rows=1, batches=1, nbytes=10,
                                   started_ns=0, duration_s=0.001, ok=True))
        expo = [Exposition(t, _up, 0.5, Peers(tmp_path, 4, i)) for i, t in enumerate(tel)]
        await expo[0].start()
        frozen = await asyncio.start_unix_server(
            lambda r, w: asyncio.sleep(5), str(tmp_path / "worker-1.sock"))
        mute = await asyncio.start_unix_server(
            lambda r, w: w.close(), str(tmp_path / "worker-3.sock"))
        try:
            started = time.monotonic()
            text = await expo[0].scrape()
            took = time.monotonic() - started
        finally:
            frozen.close()
            mute.close()
            await expo[0].stop()
            for t in tel:
                t.shutdown()
        return [s for f in text_string_to_metric_families(text.decode())
                for s in f.samples], took

    samples, took = asyncio.run(main())
    assert took < 2  # bounded by the timeout, not by the frozen peer
    assert total(samples, "tracker_metrics_workers") == 4
    assert total(samples, "tracker_metrics_workers_missing") == 3
    assert by_worker(samples, POINTS) == {"0": 100}


def test_two_expositions_merge_by_name(tmp_path: Path) -> None:
    async def main() -> list[Sample]:
        tel = [setup_telemetry("off", prometheus=True) for _ in range(2)]
        for i, t in enumerate(tel):
            t.on_flush(FlushReport(points=100 * (i + 1), rows=1, batches=1, nbytes=10,
                                   started_ns=0, duration_s=0.001, ok=i == 0))
        expo = [Exposition(t, _up, 2.0, Peers(tmp_path, 2, i)) for i, t in enumerate(tel)]
        for e in expo:
            await e.start()
        try:
            text = await expo[1].scrape()
        finally:
            for e in expo:
                await e.stop()
            for t in tel:
                t.shutdown()
        families = list(text_string_to_metric_families(text.decode()))
        counts: dict[str, int] = {}
        for f in families:
            counts[f.name] = counts.get(f.name, 0) + 1
        assert all(n == 1 for n in counts.values()), counts  # one block per metric
        return [s for f in families for s in f.samples]

    samples = asyncio.run(main())
    assert by_worker(samples, POINTS) == {"0": 100, "1": 0}  # worker 1's flush failed
    assert by_worker(samples, "tracker_ingest_flush_failures_total") == {"0": 0, "1": 1}
    assert total(samples, "tracker_metrics_workers_missing") == 0


async def _up() -> bool:
    return True


def test_a_large_answer_from_a_peer_is_read_whole(tmp_path: Path) -> None:
    """A worker's exposition of ~2 MB (many label sets) arrives in many socket reads:
    every sample of it is in the merged scrape, not the first read's worth."""
    samples_per_peer = 40_000
    lines = [f'tracker_test_total{{k="{i}"}} {i}' for i in range(samples_per_peer)]
    body = ("# TYPE tracker_test_total counter\n" + "\n".join(lines) + "\n").encode()
    assert len(body) > 1_000_000

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(body)
        await writer.drain()
        writer.close()

    async def main() -> list[Sample]:
        tel = setup_telemetry("off", prometheus=True)
        expo = Exposition(tel, _up, 5.0, Peers(tmp_path, 2, 0))
        await expo.start()
        peer = await asyncio.start_unix_server(answer, str(tmp_path / "worker-1.sock"))
        try:
            text = await expo.scrape()
        finally:
            peer.close()
            await expo.stop()
            tel.shutdown()
        return [s for f in text_string_to_metric_families(text.decode()) for s in f.samples]

    samples = asyncio.run(main())
    got = [s for s in samples if s.name == "tracker_test_total" and s.labels.get("worker") == "1"]
    assert len(got) == samples_per_peer
    assert total(samples, "tracker_metrics_workers_missing") == 0
