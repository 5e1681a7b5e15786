"""The stream servicer on shutdown: the engine's drain stops the reader, commits what
it read, acknowledges it and ends the stream with UNAVAILABLE; a half-closed stream
waiting for its last ack ends normally. The real servicer and engine over the
in-memory store."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.fakes.ingest_store import INLINE, FakeMetricStore
from tests.support import batch_req, columns, open_req
from tracker_proto.v1 import ingest_pb2
from tracker_server.domain.errors import Code, TrackerError
from tracker_server.domain.ingest import EngineConfig, IngestEngine
from tracker_server.domain.points import Limits
from tracker_server.transport.call import Call, CallKind, bind_call
from tracker_server.transport.ingest_servicer import IngestServicer

LIMITS = Limits(max_batch_points=1_000_000, max_key_bytes=250, max_keys_per_batch=1000)
RUN = str(uuid.uuid4())


async def _until(cond: Callable[[], bool], steps: int = 2000) -> None:
    for _ in range(steps):
        if cond():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


def _points(seq: int) -> Any:
    return columns(["x"], [0] * 10, range(seq * 10, seq * 10 + 10), [1.0] * 10)


async def _servicer() -> tuple[IngestServicer, IngestEngine, FakeMetricStore]:
    store = FakeMetricStore()
    engine = IngestEngine(store, EngineConfig(flush_interval_s=0.0, retry_max_s=0.0), INLINE)
    engine.start()
    bind_call(Call("/tracker.v1.IngestService/Stream", CallKind.BIDI_STREAM))
    return IngestServicer(engine, LIMITS, slow_down_s=0.05), engine, store


def test_drain_stops_reading_acks_what_was_read_and_ends_unavailable() -> None:
    read: list[int] = []

    async def requests() -> AsyncIterator[ingest_pb2.StreamRequest]:
        yield open_req(RUN, "w")
        seq = 0
        while True:  # a client that never stops on its own
            seq += 1
            read.append(seq)
            yield batch_req(seq, _points(seq))
            await asyncio.sleep(0.001)

    async def body() -> None:
        servicer, engine, store = await _servicer()
        responses: list[ingest_pb2.StreamResponse] = []

        async def consume() -> None:
            async for r in servicer.Stream(requests(), None):  # type: ignore[arg-type]
                responses.append(r)

        stream = asyncio.create_task(consume())
        await _until(lambda: len(read) >= 20)
        assert await engine.drain(2) is True
        with pytest.raises(TrackerError) as info:
            await asyncio.wait_for(stream, 2)
        assert info.value.code is Code.UNAVAILABLE
        taken = len(read)
        await asyncio.sleep(0.05)
        assert len(read) == taken  # nothing read after the drain began
        durable = store.committed_seq(next(iter(store.offsets)))
        acks = [r.ack.committed_through_seq for r in responses if r.WhichOneof("kind") == "ack"]
        # Every batch the reader took is committed and was acknowledged before the end.
        assert acks[-1] == durable >= taken - 1
        await engine.stop(1)

    asyncio.run(asyncio.wait_for(body(), 10))


def test_a_half_closed_stream_gets_its_last_ack_and_ends_normally_on_drain() -> None:
    async def requests() -> AsyncIterator[ingest_pb2.StreamRequest]:
        yield open_req(RUN, "h")
        for seq in (1, 2, 3):
            yield batch_req(seq, _points(seq))

    async def body() -> None:
        servicer, engine, store = await _servicer()
        store.hold = asyncio.Event()  # the commit waits: the stream waits for its ack
        responses: list[ingest_pb2.StreamResponse] = []

        async def consume() -> None:
            async for r in servicer.Stream(requests(), None):  # type: ignore[arg-type]
                responses.append(r)

        stream = asyncio.create_task(consume())

        def buffered() -> int:
            state = next(iter(engine._writers.values()), None)
            return len(state.pending) + len(state.inflight) if state else 0

        await _until(lambda: store.in_commit > 0 and buffered() >= 3)
        await asyncio.sleep(0.01)  # the reader has seen the half-close
        draining = asyncio.create_task(engine.drain(2))
        await asyncio.sleep(0.01)
        store.hold.set()
        await asyncio.wait_for(stream, 2)  # no error: everything it sent was acked
        assert await draining is True
        assert responses[-1].ack.committed_through_seq == 3
        await engine.stop(1)

    asyncio.run(asyncio.wait_for(body(), 10))
