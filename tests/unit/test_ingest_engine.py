"""``IngestEngine`` against the in-memory store: the exactly-once contract case by case.

Generated interleavings of the same rules are in test_ingest_properties.py; these
examples pin one behaviour each (and the bugs found by the properties).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

import pytest

from tests.fakes.ingest_store import (
    INLINE,
    Failure,
    FakeMetricStore,
    RecordingSubscriber,
    Stage,
    log_metrics,
    stream_send,
    tagged_batch,
)
from tracker_server.domain.errors import Code, TrackerError
from tracker_server.domain.ingest import EngineConfig, FlushReport, IngestEngine
from tracker_server.domain.points import PointBatch, WriterInfo, WriterKey

RUN = uuid.UUID(int=1)
W = WriterInfo(WriterKey(RUN, "w0"), rank=0, attempt=0)
W2 = WriterInfo(WriterKey(RUN, "w1"), rank=1, attempt=0)
# No waiting anywhere: flush as soon as the flusher runs, retry failed flushes at once.
FAST = EngineConfig(flush_interval_s=0.0, retry_max_s=0.0, slow_down_s=0.01)
BATCH_BYTES = tagged_batch(1, [1, 2]).nbytes
TABLE = [1, 2, 3]  # the fake store's ids of keys a, b, c


def _run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


def _batch(seq: int, writer: WriterInfo = W, n: int = 2) -> PointBatch:
    """Tags unique per writer and seq; keys a, b, c resolved as the fake store does."""
    base = (int(writer.key.writer_id[1:]) + 1) * 1_000_000 + seq * 100
    return tagged_batch(seq, list(range(base, base + n)), TABLE)


def _tags(*batches: PointBatch) -> Counter[int]:
    return Counter(t for b in batches for t in b.wall_ns.tolist())


def _stored(store: FakeMetricStore) -> Counter[int]:
    return Counter(p.wall_ns for p in store.points())


async def _until(cond: Callable[[], bool], steps: int = 5000, pause_s: float = 0.0) -> None:
    """Let the other tasks run until ``cond`` holds."""
    for _ in range(steps):
        if cond():
            return
        await asyncio.sleep(pause_s)
    raise AssertionError("condition not reached")


def _flusher_error(engine: IngestEngine) -> BaseException | None:
    for task in engine._tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            return task.exception()
    return None


async def _started(store: FakeMetricStore, config: EngineConfig = FAST) -> IngestEngine:
    engine = IngestEngine(store, config, INLINE)
    engine.start()
    return engine


async def _stop(engine: IngestEngine) -> None:
    assert _flusher_error(engine) is None
    await engine.stop(5)
    assert _flusher_error(engine) is None


# -- streams -------------------------------------------------------------------------


def test_stream_batches_commit_once_and_are_acked_after_commit() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        engine = await _started(store)
        sub = RecordingSubscriber(store, W.key)
        assert await engine.open(W, sub) == 0
        sent = [_batch(s) for s in range(1, 6)]
        for b in sent:
            assert await stream_send(engine, W, b)
        # Duplicates of buffered or committed seqs are replays: not buffered again.
        assert not engine.submit(W, _batch(3))
        await _until(lambda: store.committed_seq(W.key) == 5)
        assert not engine.submit(W, _batch(2))
        await _until(lambda: engine.buffered_bytes == 0)
        assert _stored(store) == _tags(*sent)
        assert sub.acks[-1] == 5 and not sub.problems() and not sub.aborts
        engine.close(W.key, sub)
        await _stop(engine)
        assert not engine._writers  # nothing left behind once the stream is gone

    _run(body)


def test_reopen_returns_the_durable_seq_and_replays_are_dropped() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        engine = await _started(store)
        first = RecordingSubscriber(store, W.key)
        await engine.open(W, first)
        for s in (1, 2, 3):
            await stream_send(engine, W, _batch(s))
        await _until(lambda: store.committed_seq(W.key) == 3)
        engine.close(W.key, first)
        again = RecordingSubscriber(store, W.key)
        assert await engine.open(W, again) == 3
        for s in (2, 3, 4):  # the client resends a little too much
            await stream_send(engine, W, _batch(s))
        await _until(lambda: store.committed_seq(W.key) == 4)
        assert _stored(store) == _tags(*(_batch(s) for s in (1, 2, 3, 4)))
        assert again.acks[-1] == 4 and not again.problems()
        engine.close(W.key, again)
        await _stop(engine)

    _run(body)


def test_flush_waits_for_the_interval_unless_enough_bytes_are_buffered() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        by_bytes = await _started(
            store, replace(FAST, flush_interval_s=30, flush_bytes=3 * BATCH_BYTES)
        )
        await by_bytes.open(W, RecordingSubscriber(store, W.key))
        for s in (1, 2):
            by_bytes.submit(W, _batch(s))
        await asyncio.sleep(0.02)
        assert store.committed_seq(W.key) == 0  # neither trigger yet
        by_bytes.submit(W, _batch(3))
        await _until(lambda: store.committed_seq(W.key) == 3)
        await _stop(by_bytes)

        by_time = await _started(store, replace(FAST, flush_interval_s=0.03))
        await by_time.open(W2, RecordingSubscriber(store, W2.key))
        started = time.monotonic()
        by_time.submit(W2, _batch(1, W2))
        await _until(lambda: store.committed_seq(W2.key) > 0, pause_s=0.002)
        assert time.monotonic() - started >= 0.03
        await _stop(by_time)

    _run(body)


def test_stop_flushes_what_is_buffered() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        engine = await _started(store, replace(FAST, flush_interval_s=30))
        await engine.open(W, RecordingSubscriber(store, W.key))
        engine.submit(W, _batch(1))
        await engine.stop(5)
        assert store.committed_seq(W.key) == 1 and engine.buffered_bytes == 0

    _run(body)


def test_stop_gives_up_after_its_timeout_when_commits_keep_failing() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        store.inject(*[Failure()] * 10_000)
        engine = await _started(store, replace(FAST, retry_max_s=0.001))
        await engine.open(W, RecordingSubscriber(store, W.key))
        engine.submit(W, _batch(1))
        started = time.monotonic()
        await engine.stop(0.05)
        assert time.monotonic() - started < 1
        assert store.committed_seq(W.key) == 0 and engine.buffered_bytes == BATCH_BYTES

    _run(body)


def test_open_passes_on_the_store_refusal() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        store.add_run(RUN, attempt=0)
        engine = await _started(store)
        with pytest.raises(TrackerError) as missing:
            await engine.open(WriterInfo(WriterKey(uuid.UUID(int=99), "w"), 0, 0))
        assert missing.value.code is Code.NOT_FOUND
        with pytest.raises(TrackerError) as newer:
            await engine.open(replace(W, attempt=1))
        assert newer.value.code is Code.FAILED_PRECONDITION
        assert not engine._writers
        with pytest.raises(TrackerError) as unopened:
            engine.submit(W, _batch(1))
        assert unopened.value.code is Code.FAILED_PRECONDITION
        await _stop(engine)

    _run(body)


# -- failures ------------------------------------------------------------------------


@pytest.mark.parametrize("stage", [Stage.BEFORE_PLAN, Stage.AFTER_WRITE])
@pytest.mark.parametrize("error", [None, RuntimeError("bug in the driver")])
def test_a_failed_commit_loses_nothing_and_acks_follow_the_retry(
    stage: Stage, error: Exception | None
) -> None:
    async def body() -> None:
        store = FakeMetricStore()
        store.inject(Failure(stage, error), Failure(stage, error))
        engine = await _started(store)
        sub = RecordingSubscriber(store, W.key)
        await engine.open(W, sub)
        sent = [_batch(s) for s in (1, 2, 3)]
        for b in sent:
            engine.submit(W, b)
        unary = asyncio.create_task(log_metrics(engine, W2, _batch(0, W2)))
        await _until(lambda: store.committed_seq(W.key) == 3 and unary.done())
        assert await unary == 0
        failed = [r for r in store.commits if r.error is not None]
        assert len(failed) == 2 and not any(r.durable for r in failed)
        assert _stored(store) == _tags(*sent, _batch(0, W2))
        assert len(sub.slow_downs) == 2  # the stream is told to back off
        assert sub.acks and not sub.problems()
        await _until(lambda: engine.buffered_bytes == 0)
        engine.close(W.key, sub)
        await _stop(engine)

    _run(body)


def test_a_commit_whose_reply_is_lost_is_not_written_again() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        store.inject(Failure(Stage.REPLY_LOST))
        engine = await _started(store)
        sub = RecordingSubscriber(store, W.key)
        await engine.open(W, sub)
        sent = [_batch(s) for s in (1, 2)]
        for b in sent:
            engine.submit(W, b)
        await _until(lambda: len(store.commits) == 2)
        # The retry finds seqs 1..2 committed under the lock and skips them: fencing.
        assert store.commits[1].committed_before == {W.key: 2}
        assert _stored(store) == _tags(*sent)
        assert sub.acks[-1] == 2 and not sub.problems()
        engine.close(W.key, sub)
        await _stop(engine)

    _run(body)


def test_a_lost_reply_can_store_an_unsequenced_batch_twice() -> None:
    # Seq 0 opts out of exactly-once: nothing identifies a retry of it.
    async def body() -> None:
        store = FakeMetricStore()
        store.inject(Failure(Stage.REPLY_LOST))
        engine = await _started(store)
        batch = _batch(0)
        assert await log_metrics(engine, W, batch) == 0
        assert _stored(store) == Counter({t: 2 for t in _tags(batch)})
        await _stop(engine)

    _run(body)


# -- gaps ----------------------------------------------------------------------------


def test_a_gap_aborts_the_stream_and_nothing_after_it_is_committed() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        engine = await _started(store)
        sub = RecordingSubscriber(store, W.key)
        await engine.open(W, sub)
        engine.submit(W, _batch(1))
        engine.submit(W, _batch(3))  # seq 2 was lost
        engine.submit(W, _batch(4))
        await _until(lambda: bool(sub.aborts))
        assert sub.aborts[0].code is Code.ABORTED
        await _until(lambda: engine.buffered_bytes == 0)  # seqs past the gap are dropped
        assert store.committed_seq(W.key) == 1
        assert _stored(store) == _tags(_batch(1))
        engine.close(W.key, sub)
        # The client reconnects and resends from the committed seq.
        again = RecordingSubscriber(store, W.key)
        assert await engine.open(W, again) == 1
        for s in (2, 3, 4):
            await stream_send(engine, W, _batch(s))
        await _until(lambda: store.committed_seq(W.key) == 4)
        assert _stored(store) == _tags(*(_batch(s) for s in (1, 2, 3, 4)))
        assert not again.aborts and not again.problems()
        engine.close(W.key, again)
        await _stop(engine)

    _run(body)


def test_a_unary_call_past_a_gap_fails_with_aborted() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        engine = await _started(store)
        with pytest.raises(TrackerError) as gap:
            await log_metrics(engine, W, _batch(3))
        assert gap.value.code is Code.ABORTED
        assert store.committed_seq(W.key) == 0 and not store.points()
        assert [await log_metrics(engine, W, _batch(s)) for s in (1, 2, 3)] == [1, 2, 3]
        assert await log_metrics(engine, W, _batch(2)) == 3  # replay: answered, not stored
        assert _stored(store) == _tags(*(_batch(s) for s in (1, 2, 3)))
        assert not engine._writers
        await _stop(engine)

    _run(body)


# -- replicas (fencing) --------------------------------------------------------------


def test_a_stale_buffer_on_another_replica_is_never_committed_twice() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        stale = IngestEngine(store, FAST, INLINE)  # its flusher is stuck: not started yet
        old = RecordingSubscriber(store, W.key)
        await stale.open(W, old)
        for s in (1, 2, 3):
            stale.submit(W, _batch(s))
        # The client gives up on that server and sends everything to a second replica.
        fresh = await _started(store.replica())
        new = RecordingSubscriber(store, W.key)
        assert await fresh.open(W, new) == 0
        for s in range(1, 6):
            await stream_send(fresh, W, _batch(s))
        await _until(lambda: store.committed_seq(W.key) == 5)
        stale.start()
        await _until(lambda: stale.buffered_bytes == 0)
        assert _stored(store) == _tags(*(_batch(s) for s in range(1, 6)))
        assert old.acks == [5] and not old.aborts  # durable: the other replica did it
        assert not old.problems() and not new.problems()
        stale.close(W.key, old)
        fresh.close(W.key, new)
        await _stop(stale)
        await _stop(fresh)

    _run(body)


# -- memory budget and flush size ------------------------------------------------------


def test_the_budget_holds_streams_back_until_a_commit_frees_it() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        engine = IngestEngine(store, replace(FAST, memory_budget_bytes=3 * BATCH_BYTES), INLINE)
        await engine.open(W, RecordingSubscriber(store, W.key))
        for s in (1, 2):
            assert await stream_send(engine, W, _batch(s))
        assert not engine.over_budget()
        blocked = asyncio.create_task(stream_send(engine, W, _batch(3)))
        await asyncio.sleep(0)
        assert engine.over_budget() and engine.buffered_bytes == 3 * BATCH_BYTES
        assert not blocked.done()  # the reader stops reading: HTTP/2 pushes back
        engine.start()
        await asyncio.wait_for(blocked, 5)
        assert not engine.over_budget()
        await _until(lambda: engine.buffered_bytes == 0)
        await _stop(engine)

    _run(body)


def test_one_flush_takes_at_most_max_flush_bytes_plus_one_batch() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        cap = 2 * BATCH_BYTES
        engine = IngestEngine(store, replace(FAST, max_flush_bytes=cap), INLINE)
        reports: list[FlushReport] = []
        engine.flush_observer = reports.append
        for info in (W, W2):
            await engine.open(info, RecordingSubscriber(store, info.key))
        for s in range(1, 8):
            engine.submit(W, _batch(s))
        unary = [asyncio.create_task(log_metrics(engine, W2, _batch(0, W2, n=i % 3)))
                 for i in range(6)]
        await asyncio.sleep(0)
        engine.start()
        await asyncio.wait_for(asyncio.gather(*unary), 5)
        await _until(lambda: engine.buffered_bytes == 0)
        assert len(reports) >= 5  # 13 batches, at most 3 of these sizes per flush
        biggest = max(_batch(s).nbytes for s in range(1, 8))
        assert all(r.ok and 0 < r.nbytes < cap + biggest for r in reports)
        assert store.committed_seq(W.key) == 7
        await _stop(engine)

    _run(body)


# -- regressions -----------------------------------------------------------------------


def test_an_empty_unsequenced_batch_commits_and_does_not_fail_flushes() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        engine = await _started(store)
        assert await log_metrics(engine, W, tagged_batch(0, [])) == 0
        assert all(r.error is None for r in store.commits)
        assert await log_metrics(engine, W, _batch(1)) == 1
        assert all(r.error is None for r in store.commits)
        assert _stored(store) == _tags(_batch(1))
        await _stop(engine)

    _run(body)


class _GatedKeys(FakeMetricStore):
    """A store whose key lookups wait for ``gate`` (new metric names to insert)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def resolve_keys(self, names: list[str]) -> list[int]:
        await self.gate.wait()
        return await super().resolve_keys(names)


def test_a_concurrent_release_does_not_forget_a_writer_still_in_a_call() -> None:
    # A unary call awaiting the store between open and submit used to find its writer
    # forgotten by another call's release: "writer not opened" (FAILED_PRECONDITION).
    async def body() -> None:
        store = _GatedKeys()
        engine = await _started(store)
        slow = asyncio.create_task(log_metrics(engine, W, _batch(0)))
        await _until(lambda: W.key in engine._writers)  # opened, waiting for its keys
        await engine.open(W)  # a second call of the writer, failing validation
        engine.release(W.key)
        store.gate.set()
        assert await slow == 0
        assert _stored(store) == _tags(_batch(0))
        assert not engine._writers
        await _stop(engine)

    _run(body)


@pytest.mark.parametrize("how", ["released", "cancelled"])
def test_a_writer_left_while_its_unsequenced_batch_is_in_flight(how: str) -> None:
    # Its state used to be forgotten during the commit; completing the flush then
    # raised KeyError and killed the flusher, so nothing was committed any more.
    async def body() -> None:
        store = FakeMetricStore(round_trip_yields=5)
        engine = await _started(store)
        await engine.open(W)
        call = asyncio.create_task(engine.submit_unsequenced(W, _batch(0)))
        await _until(lambda: len(store.all_commits) == 0 and engine.buffered_bytes > 0)
        await _until(lambda: engine._pending_bytes == 0)  # taken: the commit is running
        if how == "cancelled":
            call.cancel()
        engine.release(W.key)
        await _until(lambda: bool(store.commits))
        assert _flusher_error(engine) is None
        if how == "released":
            assert await call == 0
        else:
            with contextlib.suppress(asyncio.CancelledError):
                await call
        assert _stored(store) == _tags(_batch(0))
        assert not engine._writers and engine.buffered_bytes == 0
        assert await log_metrics(engine, W, _batch(1)) == 1  # the flusher still works
        await _stop(engine)

    _run(body)


def test_a_failed_flush_puts_unsequenced_batches_back_in_their_order() -> None:
    async def body() -> None:
        store = FakeMetricStore(round_trip_yields=5)
        store.inject(Failure())
        engine = await _started(store)
        await engine.open(W)
        # One key (tags divisible by 3), so the stored chunk keeps the arrival order.
        calls = [asyncio.create_task(engine.submit_unsequenced(W, tagged_batch(0, [t], TABLE)))
                 for t in (3, 6, 9)]
        await _until(lambda: engine.buffered_bytes > 0 and engine._pending_bytes == 0)
        # Arrives while the failing commit runs: it must stay behind the three.
        late = tagged_batch(0, [12], TABLE)
        calls.append(asyncio.create_task(engine.submit_unsequenced(W, late)))
        await asyncio.wait_for(asyncio.gather(*calls), 5)
        assert [p.wall_ns for p in store.points()] == [3, 6, 9, 12]
        engine.release(W.key)
        await _stop(engine)

    _run(body)
