"""The ingest servicer reports to its call: batches and points counted, the stream
paced by the call's throttle (SlowDown, then no read until the debt is paid), unary
LogMetrics refused over its points. A real IngestEngine over an in-memory store."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.support import batch_req, columns, open_req
from tracker_proto.v1 import ingest_pb2
from tracker_server.domain.errors import Code, TrackerError
from tracker_server.domain.ingest import CommitPlan, EngineConfig, IngestEngine
from tracker_server.domain.points import Limits, WriterInfo, WriterKey
from tracker_server.transport.call import Call, CallKind, bind_call
from tracker_server.transport.call_steps import pacing, refusing
from tracker_server.transport.ingest_servicer import IngestServicer
from tracker_server.transport.ratelimit import TokenBucket

LIMITS = Limits(max_batch_points=1_000_000, max_key_bytes=250, max_keys_per_batch=1000)


class MemoryStore:
    """The engine's MetricStore port, in memory: offsets and key ids, chunks counted."""

    def __init__(self) -> None:
        self.committed: dict[WriterKey, int] = {}
        self.keys: dict[str, int] = {}
        self.points = 0

    async def open_writer(self, info: WriterInfo) -> int:
        return self.committed.get(info.key, 0)

    async def resolve_keys(self, names: list[str]) -> list[int]:
        return [self.keys.setdefault(name, len(self.keys) + 1) for name in names]

    def prepare(self, plan: CommitPlan) -> None:
        """Nothing to encode in memory."""

    async def commit(self, writers: list[WriterInfo],
                     plan: Callable[[dict[WriterKey, int]], CommitPlan]) -> CommitPlan:
        made = plan({w.key: self.committed.get(w.key, 0) for w in writers})
        self.committed.update(made.offsets)
        self.points += made.chunks.points if made.chunks else 0
        return made


def _with_servicer(call: Call, body: Callable[[IngestServicer, MemoryStore],
                                              Awaitable[Any]]) -> Any:
    async def scenario() -> Any:
        store = MemoryStore()
        engine = IngestEngine(store, EngineConfig(flush_interval_s=0.005))
        engine.start()
        bind_call(call)
        try:
            return await body(IngestServicer(engine, LIMITS, slow_down_s=0.05), store)
        finally:
            await engine.stop(2)

    return asyncio.run(scenario())


def _points(n: int, first: int = 0) -> Any:
    return columns(["x"], [0] * n, range(first, first + n), [1.0] * n)


def test_a_stream_over_its_rate_gets_slow_down_and_is_not_read_until_paid() -> None:
    call = Call("/tracker.v1.IngestService/Stream", CallKind.BIDI_STREAM,
                throttle=pacing(TokenBucket(rate=1000, burst=1000)))
    run_id = str(uuid.uuid4())
    read_at: list[float] = []

    async def requests() -> AsyncIterator[ingest_pb2.StreamRequest]:
        yield open_req(run_id, "w")
        for seq, n in ((1, 1050), (2, 1)):  # 50 over the burst: 50 ms of debt
            read_at.append(time.monotonic())
            yield batch_req(seq, _points(n, first=seq * 10_000))

    async def body(servicer: IngestServicer, store: MemoryStore) -> Any:
        responses = [r async for r in servicer.Stream(requests(), None)]  # type: ignore[arg-type]
        return responses, store.points

    responses, stored = _with_servicer(call, body)
    kinds = [r.WhichOneof("kind") for r in responses]
    assert kinds[0] == "opened" and "slow_down" in kinds
    first_slow = next(r.slow_down for r in responses if r.WhichOneof("kind") == "slow_down")
    assert 40 <= first_slow.retry_after.ToMilliseconds() <= 50
    assert read_at[1] - read_at[0] >= 0.045  # the batch went through, the next read waited
    assert responses[-1].ack.committed_through_seq == 2 and stored == 1051
    assert (call.batches, call.points) == (2, 1051)
    assert call.throttled_s >= 0.045


def test_an_unthrottled_stream_reports_its_batches_and_no_slow_down() -> None:
    call = Call("/tracker.v1.IngestService/Stream", CallKind.BIDI_STREAM)
    run_id = str(uuid.uuid4())

    async def requests() -> AsyncIterator[ingest_pb2.StreamRequest]:
        yield open_req(run_id, "w")
        for seq in (1, 2, 3):
            yield batch_req(seq, _points(10, first=seq * 10))

    async def body(servicer: IngestServicer, store: MemoryStore) -> Any:
        return [r async for r in servicer.Stream(requests(), None)]  # type: ignore[arg-type]

    responses = _with_servicer(call, body)
    assert "slow_down" not in [r.WhichOneof("kind") for r in responses]
    assert (call.batches, call.points, call.throttled_s) == (3, 30, 0.0)


def test_stream_errors_are_raised_for_the_interceptor_to_map() -> None:
    call = Call("/tracker.v1.IngestService/Stream", CallKind.BIDI_STREAM)

    async def requests() -> AsyncIterator[ingest_pb2.StreamRequest]:
        yield batch_req(1, _points(1))

    async def body(servicer: IngestServicer, store: MemoryStore) -> Any:
        return [r async for r in servicer.Stream(requests(), None)]  # type: ignore[arg-type]

    with pytest.raises(TrackerError) as info:
        _with_servicer(call, body)
    assert info.value.code is Code.INVALID_ARGUMENT and "Open" in info.value.message
    assert (call.batches, call.points) == (0, 0)  # an ingest call, even when refused


def test_log_metrics_over_the_callers_points_is_refused_before_anything_is_written() -> None:
    bucket = TokenBucket(rate=1000, burst=1000)
    run_id = str(uuid.uuid4())

    def request(first: int) -> ingest_pb2.LogMetricsRequest:
        return ingest_pb2.LogMetricsRequest(
            writer=ingest_pb2.Open(run_id=run_id, writer_id="u"),
            batch=ingest_pb2.Batch(columns=_points(800, first)))

    async def body(servicer: IngestServicer, store: MemoryStore) -> Any:
        await servicer.LogMetrics(request(0), None)  # type: ignore[arg-type]
        bind_call(refused)
        with pytest.raises(TrackerError) as info:
            await servicer.LogMetrics(request(800), None)  # type: ignore[arg-type]
        return info.value, store.points

    accepted = Call("/tracker.v1.IngestService/LogMetrics", CallKind.UNARY,
                    throttle=refusing(bucket))
    refused = Call("/tracker.v1.IngestService/LogMetrics", CallKind.UNARY,
                   throttle=refusing(bucket))
    error, stored = _with_servicer(accepted, body)
    assert error.code is Code.RESOURCE_EXHAUSTED and error.retry_after_s > 0
    assert stored == 800
    assert (accepted.batches, accepted.points) == (1, 800)
    assert (refused.batches, refused.points) == (1, 800)
