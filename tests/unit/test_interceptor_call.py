"""The per-call record: counting, throttling, what it logs, how it is bound."""

from __future__ import annotations

import asyncio

import pytest

from tracker_server.domain.errors import Code, TrackerError
from tracker_server.transport.call import Call, CallKind, bind_call, current_call


def test_a_new_call_logs_no_ingest_fields() -> None:
    call = Call("/tracker.v1.ExperimentService/GetRun", CallKind.UNARY, request_bytes=12)
    assert call.fields() == {"request_bytes": 12}


def test_track_ingest_logs_zeros() -> None:
    call = Call("/tracker.v1.IngestService/Stream", CallKind.BIDI_STREAM)
    call.track_ingest()
    assert call.fields() == {"batches": 0, "points": 0}


def test_add_batch_counts_and_returns_the_throttles_pause() -> None:
    asked: list[int] = []

    def throttle(points: int) -> float:
        asked.append(points)
        return 0.25 if points > 100 else 0.0

    call = Call("/tracker.v1.IngestService/Stream", CallKind.BIDI_STREAM, throttle=throttle)
    assert call.add_batch(10) == 0.0
    assert call.add_batch(500) == 0.25
    assert asked == [10, 500]
    assert (call.batches, call.points, call.throttled_s) == (2, 510, 0.25)
    assert call.fields()["throttled_ms"] == 250.0


def test_a_refusing_throttle_propagates_and_the_batch_still_counts() -> None:
    def refuse(points: int) -> float:
        raise TrackerError(Code.RESOURCE_EXHAUSTED, "over", retry_after_s=1.0)

    call = Call("/tracker.v1.IngestService/LogMetrics", CallKind.UNARY, throttle=refuse)
    with pytest.raises(TrackerError) as info:
        call.add_batch(7)
    assert info.value.code is Code.RESOURCE_EXHAUSTED
    assert (call.batches, call.points) == (1, 7)


def test_finish_records_code_and_duration() -> None:
    call = Call("/m", CallKind.UNARY, started=0.0)
    call.finish("NOT_FOUND")
    assert call.code == "NOT_FOUND" and call.duration_s > 0


def test_current_call_is_the_bound_one_else_a_detached_record() -> None:
    async def scenario() -> None:
        detached = current_call()
        assert detached.method == "" and detached.add_batch(5) == 0.0
        assert current_call() is not detached  # fresh each time: nothing accumulates
        call = Call("/m", CallKind.UNARY)
        bind_call(call)
        assert current_call() is call
        seen = await asyncio.create_task(_current())  # tasks inherit the binding
        assert seen is call
        bind_call(None)
        assert current_call() is not call

    asyncio.run(scenario())


async def _current() -> Call:
    return current_call()
