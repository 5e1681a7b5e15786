"""Flush lanes and the flush pipeline of ``IngestEngine``, case by case: the next flush
is built while one commits, lanes commit at the same time, a failure puts both flushes
back, a plan built for the wrong seqs is rebuilt, group commit, and the drain on
shutdown. Generated interleavings with lanes are in test_ingest_properties.py."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from tests.fakes.ingest_store import (
    INLINE,
    Failure,
    FakeMetricStore,
    RecordingSubscriber,
    log_metrics,
    stream_send,
    tagged_batch,
)
from tracker_server.domain.errors import Code, TrackerError
from tracker_server.domain.flush_lanes import FlushReport, lane_index
from tracker_server.domain.ingest import EngineConfig, IngestEngine
from tracker_server.domain.points import PointBatch, WriterInfo, WriterKey

RUN = uuid.UUID(int=7)
TABLE = [1, 2, 3]
FAST = EngineConfig(flush_interval_s=0.0, retry_max_s=0.0, slow_down_s=0.01)


def _writers_in_lanes(lanes: int) -> list[WriterInfo]:
    """One writer per lane (lane i holds writer i)."""
    found: dict[int, WriterInfo] = {}
    i = 0
    while len(found) < lanes:
        info = WriterInfo(WriterKey(RUN, f"w{i}"), rank=i, attempt=0)
        found.setdefault(lane_index(info.key, lanes), info)
        i += 1
    return [found[k] for k in range(lanes)]


W, W2 = _writers_in_lanes(2)


def _batch(seq: int, writer: WriterInfo = W, n: int = 2) -> PointBatch:
    base = (int(writer.key.writer_id[1:]) + 1) * 1_000_000 + seq * 100
    return tagged_batch(seq, list(range(base, base + n)), TABLE)


def _tags(*batches: PointBatch) -> Counter[int]:
    return Counter(t for b in batches for t in b.wall_ns.tolist())


def _stored(store: FakeMetricStore) -> Counter[int]:
    return Counter(p.wall_ns for p in store.points())


def _run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


async def _until(cond: Callable[[], bool], steps: int = 5000) -> None:
    for _ in range(steps):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


async def _engine(store: FakeMetricStore, config: EngineConfig = FAST) -> IngestEngine:
    engine = IngestEngine(store, config, INLINE)
    engine.reports = []  # type: ignore[attr-defined]  # collected below
    engine.flush_observer = engine.reports.append  # type: ignore[attr-defined]
    engine.start()
    return engine


def _reports(engine: IngestEngine) -> list[FlushReport]:
    return engine.reports  # type: ignore[attr-defined, no-any-return]


def test_lane_index_is_stable_and_spreads_writers() -> None:
    keys = [WriterKey(uuid.UUID(int=r), f"rank{k}") for r in range(20) for k in range(8)]
    counts = Counter(lane_index(k, 4) for k in keys)
    assert set(counts) == {0, 1, 2, 3} and min(counts.values()) >= 20
    assert [lane_index(k, 4) for k in keys] == [lane_index(k, 4) for k in keys]
    assert {lane_index(k, 1) for k in keys} == {0}


def test_the_next_flush_is_built_while_one_commits_and_acks_keep_seq_order() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        store.hold = asyncio.Event()
        engine = await _engine(store)
        sub = RecordingSubscriber(store, W.key)
        await engine.open(W, sub)
        await stream_send(engine, W, _batch(1))
        await _until(lambda: store.in_commit == 1)  # flush 1 is in its "COPY"
        for s in (2, 3):
            await stream_send(engine, W, _batch(s))
        await _until(lambda: store.prepared == 2)  # flush 2 built meanwhile
        assert engine._pending_bytes == 0 and store.committed_seq(W.key) == 0
        assert not sub.acks  # nothing is acknowledged before its commit
        store.hold.set()
        await _until(lambda: store.committed_seq(W.key) == 3)
        assert sub.acks == [1, 3] and not sub.problems()
        assert [len(r.writers) for r in store.commits] == [1, 1]
        assert not any(r.rebuilt for r in _reports(engine))  # the guess held
        assert store.prepared == 2
        assert _stored(store) == _tags(*(_batch(s) for s in (1, 2, 3)))
        engine.close(W.key, sub)
        await engine.stop(1)

    _run(body)


def test_without_the_pipeline_nothing_is_built_during_a_commit() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        store.hold = asyncio.Event()
        engine = await _engine(store, replace(FAST, pipeline=False))
        await engine.open(W)
        engine.submit(W, _batch(1))
        await _until(lambda: store.in_commit == 1)
        engine.submit(W, _batch(2))
        for _ in range(50):
            await asyncio.sleep(0)
        assert store.prepared == 1 and engine._pending_bytes > 0
        store.hold.set()
        assert await engine.wait_committed(W.key, 2) == 2
        engine.release(W.key)
        await engine.stop(1)

    _run(body)


def test_lanes_commit_at_the_same_time_each_with_its_own_writers() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        store.hold = asyncio.Event()
        engine = await _engine(store, replace(FAST, lanes=2))
        subs = {}
        for w in (W, W2):
            subs[w.key] = RecordingSubscriber(store, w.key)
            await engine.open(w, subs[w.key])
            await stream_send(engine, w, _batch(1, w))
        await _until(lambda: store.in_commit == 2)
        store.hold.set()
        await _until(lambda: engine.buffered_bytes == 0)
        assert store.max_in_commit == 2
        # Each transaction locked one lane's writers only.
        assert sorted(r.writers for r in store.commits) == sorted([(W.key,), (W2.key,)])
        assert {r.lane for r in _reports(engine)} == {0, 1}
        assert all(s.acks == [1] for s in subs.values())
        for w in (W, W2):
            engine.close(w.key, subs[w.key])
        await engine.stop(1)

    _run(body)


def test_a_failed_commit_puts_back_the_flush_built_behind_it_without_a_gap() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        store.hold = asyncio.Event()
        store.inject(Failure())  # the first commit fails (before its plan is used)
        engine = await _engine(store)
        sub = RecordingSubscriber(store, W.key)
        await engine.open(W, sub)
        await stream_send(engine, W, _batch(1))
        await _until(lambda: len(store.commits) == 1)  # failed at once
        store.clear_failures()
        store.inject(Failure())
        await stream_send(engine, W, _batch(2))
        await _until(lambda: store.in_commit == 1)
        # Its plan assumes seq 1 committed; seq 3 is built behind it.
        await stream_send(engine, W, _batch(3))
        await _until(lambda: store.prepared >= 3)
        store.hold.set()
        await _until(lambda: store.committed_seq(W.key) == 3)
        assert not sub.aborts, sub.aborts  # no gap was seen: both went back in front
        assert sub.acks[-1] == 3 and not sub.problems() and sub.slow_downs
        assert _stored(store) == _tags(*(_batch(s) for s in (1, 2, 3)))
        engine.close(W.key, sub)
        await engine.stop(1)

    _run(body)


def test_seqs_cut_behind_a_deferred_writer_go_back_with_it_without_a_gap() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        store.hold = asyncio.Event()
        store.busy_runs.add(RUN)  # a frozen peer holds the run: its writers are deferred
        engine = await _engine(store)
        sub = RecordingSubscriber(store, W.key)
        await engine.open(W, sub)
        await stream_send(engine, W, _batch(1))
        await _until(lambda: store.in_commit == 1)  # deferred seq 1, held in the commit
        # Seq 2 is cut behind it, planned as if seq 1 were committing now.
        await stream_send(engine, W, _batch(2))
        await _until(lambda: store.prepared >= 2)
        store.busy_runs.clear()
        store.hold.set()
        await _until(lambda: store.committed_seq(W.key) == 2)
        assert not sub.aborts, sub.aborts  # seq 2 went back behind seq 1: no gap
        assert sub.acks[-1] == 2 and not sub.problems()
        assert _stored(store) == _tags(_batch(1), _batch(2))
        engine.close(W.key, sub)
        await engine.stop(1)

    _run(body)


def test_a_plan_built_for_seqs_another_replica_moved_on_is_rebuilt() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        store.hold = asyncio.Event()
        engine = await _engine(store)
        await engine.open(W)
        engine.submit(W, _batch(1))
        await _until(lambda: store.in_commit == 1)  # holds W's offset lock
        for s in (2, 3):
            engine.submit(W, _batch(s))
        await _until(lambda: store.prepared == 2)  # built assuming seq 1 committed
        # The client also reached a second replica with seq 2; its commit queues for
        # the lock and gets it before this server's next flush.
        racer = await _engine(store.replica())
        await racer.open(W)
        racer.submit(W, _batch(2))
        await _until(lambda: len(store.all_commits) == 0 and racer._pending_bytes == 0)
        store.hold.set()
        assert await racer.wait_committed(W.key, 2) == 2
        assert await engine.wait_committed(W.key, 3) == 3
        assert [r.rebuilt for r in _reports(engine)] == [False, True]
        assert _stored(store) == _tags(*(_batch(s) for s in (1, 2, 3)))  # 2 once
        racer.release(W.key)
        engine.release(W.key)
        await racer.stop(1)
        await engine.stop(1)

    _run(body)


def test_group_commit_flushes_at_once_and_a_linger_waits() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        engine = await _engine(store)
        loop = asyncio.get_running_loop()
        await engine.open(W)
        t0 = loop.time()
        assert await log_metrics(engine, W, _batch(1)) == 1
        assert loop.time() - t0 < 0.05
        engine.release(W.key)
        await engine.stop(1)
        lingering = await _engine(FakeMetricStore(), replace(FAST, flush_interval_s=0.15))
        t0 = loop.time()
        assert await log_metrics(lingering, W, _batch(1)) == 1
        assert loop.time() - t0 >= 0.14
        await lingering.stop(1)

    _run(body)


def test_drain_stops_streams_commits_acks_then_ends_them_unavailable() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        store.hold = asyncio.Event()
        engine = await _engine(store, replace(FAST, lanes=2))
        subs = [RecordingSubscriber(store, w.key) for w in (W, W2)]
        for w, sub in zip((W, W2), subs, strict=True):
            await engine.open(w, sub)
            for s in (1, 2):
                await stream_send(engine, w, _batch(s, w))
        drain = asyncio.create_task(engine.drain(5))
        await _until(lambda: all(s.drained == 1 for s in subs))
        assert not drain.done() and not any(s.aborts for s in subs)  # still committing
        try:
            await engine.open(W, RecordingSubscriber(store, W.key))
            raise AssertionError("a new stream was accepted while draining")
        except TrackerError as exc:
            assert exc.code is Code.UNAVAILABLE
        store.hold.set()
        assert await drain is True
        for sub in subs:
            assert sub.acks[-1] == 2 and not sub.problems()
            assert [e.code for e in sub.aborts] == [Code.UNAVAILABLE]
            # The last ack came before the end of the stream.
        assert engine.buffered_bytes == 0
        await engine.stop(1)

    _run(body)


def test_drain_gives_up_after_its_timeout_and_still_ends_the_streams() -> None:
    async def body() -> None:
        store = FakeMetricStore()
        store.hold = asyncio.Event()  # never set: the database hangs
        engine = await _engine(store)
        sub = RecordingSubscriber(store, W.key)
        await engine.open(W, sub)
        await stream_send(engine, W, _batch(1))
        assert await engine.drain(0.05) is False
        assert [e.code for e in sub.aborts] == [Code.UNAVAILABLE] and not sub.acks
        await engine.stop(0.05)

    _run(body)


def test_flushes_are_built_in_worker_threads_by_default() -> None:
    async def body() -> None:
        import threading

        store = FakeMetricStore()
        threads: set[str] = set()
        store.prepare = lambda plan: threads.add(threading.current_thread().name)  # type: ignore[method-assign]
        engine = IngestEngine(store, replace(FAST, lanes=2))
        engine.start()
        for w in (W, W2):
            await engine.open(w)
            engine.submit(w, _batch(1, w))
        for w in (W, W2):
            assert await asyncio.wait_for(engine.wait_committed(w.key, 1), 5) == 1
            engine.release(w.key)
        assert threads and all(t.startswith("ingest-build") for t in threads)
        await engine.stop(1)

    _run(body)


def test_a_backlog_cut_as_a_commit_starts_is_planned_for_its_seqs() -> None:
    # The flush cut right after a commit starts used to be planned against the old
    # committed seqs, so every such flush was rebuilt inside its transaction.
    async def body() -> None:
        store = FakeMetricStore(round_trip_yields=3)
        engine = await _engine(store, replace(FAST, max_flush_bytes=2 * _batch(1).nbytes))
        await engine.open(W)
        for s in range(1, 13):  # six flushes' worth waiting at once
            engine.submit(W, _batch(s))
        assert await engine.wait_committed(W.key, 12) == 12
        reports = _reports(engine)
        assert len(reports) == 6 and not any(r.rebuilt for r in reports)
        assert store.prepared == 6
        engine.release(W.key)
        await engine.stop(1)

    _run(body)
