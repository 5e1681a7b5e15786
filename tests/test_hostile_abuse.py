"""Abusive clients, each met by an explicit, configurable limit (docs/operations.md):

- a stream that opens and never sends its Open: DEADLINE_EXCEEDED after
  ``stream_open_timeout_s``, its slot released;
- a stream that sends 10,000 batches without reading a response: it is served, the
  server keeps at most one pending ack for it (cumulative), everything is committed once;
- 100,000 distinct keys in one run: batches past ``max_keys_per_run`` are rejected with
  RESOURCE_EXHAUSTED, the stream goes on;
- 1,000 concurrent streams: those past ``max_streams`` end with RESOURCE_EXHAUSTED and
  a retry delay, the others are served;
- a client opening streams in a tight loop: each is served, a writer beside it is not
  slowed down.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import grpc
import numpy as np
import pytest

from tests.support import Api, ServerThread, batch_req, columns, count_points, open_req
from tracker_proto.v1 import ingest_pb2, ingest_pb2_grpc, query_pb2, query_pb2_grpc
from tracker_server.config import Settings


@pytest.fixture
def limited(settings: Settings) -> Iterator[ServerThread]:
    srv = ServerThread(replace(settings, stream_open_timeout_s=1.0, max_streams=600,
                               max_keys_per_run=20_000))
    try:
        yield srv
    finally:
        srv.stop()


def test_a_stream_that_never_opens_times_out(limited: ServerThread) -> None:
    api = Api(limited.address)
    hold = threading.Event()

    def silent() -> Iterator[ingest_pb2.StreamRequest]:
        hold.wait(30)
        return
        yield  # a generator that sends nothing until released

    try:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            list(api.ingest.Stream(silent(), timeout=20))
        took = time.monotonic() - started
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "no Open within 1 s" in (info.value.details() or "")
        assert took < 5, took
    finally:
        hold.set()
        api.close()


def test_ten_thousand_batches_without_reading_a_response(limited: ServerThread,
                                                          database_url: str) -> None:
    api = Api(limited.address)
    try:
        run_id = api.new_run()
        n = 10_000
        sent = threading.Event()

        def requests() -> Iterator[ingest_pb2.StreamRequest]:
            yield open_req(run_id, "deaf")
            for seq in range(1, n + 1):
                yield batch_req(seq, columns(["x"], [0], [seq], [float(seq)]))
            sent.set()

        call = api.ingest.Stream(requests(), timeout=120)
        assert sent.wait(90), "the server stopped reading"
        responses = list(call)
        acks = [r.ack.committed_through_seq for r in responses if r.WhichOneof("kind") == "ack"]
        assert acks[-1] == n
        assert len(acks) < n // 10, len(acks)  # cumulative acks, not one per batch
        assert count_points(database_url, run_id) == n
    finally:
        api.close()


def test_a_hundred_thousand_keys_in_one_run(limited: ServerThread) -> None:
    api = Api(limited.address)
    try:
        run_id = api.new_run()
        per_batch = 10_000
        reqs = [open_req(run_id, "many-keys")]
        for b in range(10):
            keys = [f"k{b}_{i}" for i in range(per_batch)]
            reqs.append(batch_req(b + 1, columns(keys, np.arange(per_batch), np.zeros(per_batch),
                                                 np.ones(per_batch))))
        responses = list(api.ingest.Stream(iter(reqs), timeout=120))
        rejected = [r.rejected for r in responses if r.WhichOneof("kind") == "rejected"]
        assert [r.seq for r in rejected] == list(range(3, 11))
        assert all(r.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] for r in rejected)
        assert "limit of 20000" in rejected[0].message
        assert responses[-1].ack.committed_through_seq == 10  # the stream went on
        query = query_pb2_grpc.MetricsQueryServiceStub(api.channel)
        keys = query.ListMetricKeys(query_pb2.ListMetricKeysRequest(run_id=run_id)).keys
        assert len(keys) == 20_000
        # Known keys still go in; the unary path applies the same limit.
        ok = ingest_pb2.LogMetricsRequest(
            writer=ingest_pb2.Open(run_id=run_id, writer_id="u"),
            batch=ingest_pb2.Batch(seq=1, columns=columns(["k0_1"], [0], [5], [2.0])))
        assert api.ingest.LogMetrics(ok, timeout=30).points_written == 1
        new = ingest_pb2.LogMetricsRequest(
            writer=ingest_pb2.Open(run_id=run_id, writer_id="u"),
            batch=ingest_pb2.Batch(seq=2, columns=columns(["fresh"], [0], [5], [2.0])))
        with pytest.raises(grpc.RpcError) as info:
            api.ingest.LogMetrics(new, timeout=30)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        api.close()


async def _many_streams(address: str, run_id: str, n: int) -> tuple[int, int, list[str]]:
    channels = [grpc.aio.insecure_channel(address) for _ in range(4)]
    all_opened = asyncio.Event()
    opened = 0
    refused = 0
    other: list[str] = []

    async def one(i: int) -> None:
        nonlocal opened, refused
        stub = ingest_pb2_grpc.IngestServiceStub(channels[i % 4])
        call = stub.Stream(timeout=120)
        try:
            await call.write(open_req(run_id, f"s{i}"))
            first = await call.read()
            assert first.WhichOneof("kind") == "opened"
            opened += 1
            if opened + refused == n:
                all_opened.set()
            await all_opened.wait()
            await call.write(batch_req(1, columns(["x"], [0], [i], [1.0])))
            await call.done_writing()
            while await call.read() is not grpc.aio.EOF:
                pass
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                refused += 1
                if opened + refused == n:
                    all_opened.set()
            else:
                other.append(f"{exc.code().name}: {exc.details()}")
                all_opened.set()

    await asyncio.gather(*(one(i) for i in range(n)))
    for ch in channels:
        await ch.close()
    return opened, refused, other


def test_a_thousand_concurrent_streams(limited: ServerThread, database_url: str) -> None:
    api = Api(limited.address)
    try:
        run_id = api.new_run()
        opened, refused, other = asyncio.run(_many_streams(limited.address, run_id, 1000))
        assert other == []
        assert (opened, refused) == (600, 400)
        assert count_points(database_url, run_id) == 600
    finally:
        api.close()


def test_streams_opened_in_a_tight_loop(limited: ServerThread, database_url: str) -> None:
    api = Api(limited.address)
    try:
        run_id = api.new_run()
        stop = threading.Event()
        latencies: list[float] = []

        def good() -> None:
            seq = 0

            def reqs() -> Iterator[ingest_pb2.StreamRequest]:
                nonlocal seq
                yield open_req(run_id, "steady")
                while not stop.is_set():
                    seq += 1
                    latencies.append(time.monotonic())
                    yield batch_req(seq, columns(["y"], [0], [seq], [1.0]))
                    time.sleep(0.02)

            for _ in api.ingest.Stream(reqs(), timeout=120):
                pass

        t = threading.Thread(target=good)
        t.start()
        started = time.monotonic()
        loops = 0
        while time.monotonic() - started < 5:
            resp = list(api.ingest.Stream(iter([open_req(run_id, f"churn{loops % 50}")]),
                                          timeout=10))
            assert resp[0].WhichOneof("kind") == "opened"
            loops += 1
        rate = loops / (time.monotonic() - started)
        stop.set()
        t.join(30)
        assert loops > 50, loops
        query = query_pb2_grpc.MetricsQueryServiceStub(api.channel)
        ranks = query.ListMetricKeys(query_pb2.ListMetricKeysRequest(run_id=run_id)).keys
        assert [k.summary.key for k in ranks] == ["y"]
        assert count_points(database_url, run_id) == len(latencies)
        print(f"stream opens: {rate:.0f}/s")
    finally:
        api.close()
