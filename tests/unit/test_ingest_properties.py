"""Generated schedules against the ingest engine: exactly-once under any interleaving.

``IngestMachine`` drives one or two engines (server replicas) on one in-memory store
with writers that stream, reconnect (to either replica, resending too much), replay,
lose batches, call the unary API with and without seqs, while commits fail at any
stage. Every step is checked against the engine's promises; at the end every client
resends what is not yet durable and the stored points must be exactly the batches
sent, each once. All waits are zero-length, so an example is deterministic and fast.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from tests.fakes.ingest_store import (
    INLINE,
    CommitRecord,
    Failure,
    FakeMetricStore,
    RecordingSubscriber,
    Stage,
    log_metrics,
    stream_send,
    tagged_batch,
)
from tracker_server.domain.errors import Code, TrackerError
from tracker_server.domain.flush_lanes import Lane, lane_index
from tracker_server.domain.ingest import CommitPlan, EngineConfig, FlushReport, IngestEngine
from tracker_server.domain.points import PointBatch, WriterInfo, WriterKey

RUNS = [uuid.UUID(int=1), uuid.UUID(int=2)]
WRITERS = [WriterInfo(WriterKey(RUNS[i % 2], f"w{i}"), rank=i, attempt=0) for i in range(3)]
INDEX = {w.key: i for i, w in enumerate(WRITERS)}
SEQ_BASE = 10_000_000
UNSEQ_BASE = 900_000_000
MAX_POINTS = 3
MAX_BATCH_BYTES = tagged_batch(1, list(range(MAX_POINTS))).nbytes
SETTLE_STEPS = 5_000


def seq_tags(writer: int, seq: int) -> list[int]:
    """Tags of the points of ``writer``'s batch ``seq`` (0..3 points, always the same)."""
    n = (3 * writer + 5 * seq) % (MAX_POINTS + 1)
    return [(writer + 1) * SEQ_BASE + seq * 100 + i for i in range(n)]


def unseq_tags(uid: int) -> list[int]:
    """Tags of unsequenced batch ``uid`` (some are empty)."""
    return [UNSEQ_BASE + uid * 100 + i for i in range(uid % (MAX_POINTS + 1))]


def sequenced_batch(writer: int, seq: int) -> PointBatch:
    """A fresh batch object, as the servicer decodes one per message."""
    return tagged_batch(seq, seq_tags(writer, seq))


def decode(tag: int) -> tuple[str, int, int]:
    """("seq", writer, seq) or ("unseq", uid, 0) of a stored point."""
    if tag >= UNSEQ_BASE:
        return "unseq", (tag - UNSEQ_BASE) // 100, 0
    return "seq", tag // SEQ_BASE - 1, (tag % SEQ_BASE) // 100


def plan_tags(plan: CommitPlan | None) -> list[int]:
    """Tags of the points a plan writes."""
    if plan is None or plan.chunks is None:
        return []
    return [int(t) for t in plan.chunks.wall_ns.tolist()]


async def settle(done: Callable[[], bool], steps: int = SETTLE_STEPS) -> bool:
    """Let every task run until ``done()`` holds (zero-length waits only)."""
    for _ in range(steps):
        if done():
            return True
        await asyncio.sleep(0)
    return bool(done())


class WatchedEngine(IngestEngine):
    """The engine, watched where it buffers bytes: who adds them while over budget.

    Streams and unary calls check the budget after (streams) or before (unary calls)
    each batch, so within one stretch over budget each of them may add one batch, no
    more: a second one means the engine let a caller through while over budget.
    """

    def __init__(self, store: FakeMetricStore, config: EngineConfig) -> None:
        super().__init__(store, config, INLINE)
        self.budget = config.memory_budget_bytes
        self.reports: list[FlushReport] = []
        self.flush_observer = self._on_flush
        self.violations: list[str] = []
        self.went_over = False
        self.fake = store
        self._adders: set[asyncio.Task[Any] | None] = set()

    @property
    def store_overlap(self) -> bool:
        """A flush was built while another one committed."""
        return self.fake.prepared_during_commit > 0

    def _on_flush(self, report: FlushReport) -> None:
        self.reports.append(report)
        if self.buffered_bytes < self.budget:  # the lowest point since the last flush
            self._adders.clear()

    def _account(self, nbytes: int, lane: Lane) -> None:
        adder = asyncio.current_task()
        if self.buffered_bytes < self.budget:
            self._adders.clear()
        elif adder in self._adders:
            self.violations.append(f"{adder} added a second batch while over budget")
        self._adders.add(adder)
        super()._account(nbytes, lane)
        self.went_over |= self.over_budget()
        if self.buffered_bytes >= self.budget + MAX_BATCH_BYTES * len(self._adders):
            self.violations.append(
                f"{self.buffered_bytes} bytes buffered: budget {self.budget} exceeded by "
                f"more than one batch for each of {len(self._adders)} callers"
            )


@dataclass(eq=False)
class Stream:
    """One client stream of a writer to one replica, and its server-side reader."""

    writer: int
    engine: int
    sub: RecordingSubscriber
    next_seq: int
    inbox: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    """Seqs the client has sent and the reader has not yet handled."""
    unread: int = 0
    last_sent: int = 0
    task: asyncio.Task[None] | None = None

    async def read(self, engine: IngestEngine) -> None:
        """The servicer's reader: one batch at a time, in the order sent."""
        while True:
            seq = await self.inbox.get()
            await stream_send(engine, WRITERS[self.writer], sequenced_batch(self.writer, seq))
            self.last_sent = max(self.last_sent, seq)
            self.unread -= 1


@dataclass(eq=False)
class Unary:
    """One LogMetrics call in flight."""

    writer: int
    engine: int
    seq: int
    uid: int
    task: asyncio.Task[int]


@dataclass
class Client:
    """What a writer's client knows: the batches it has numbered."""

    max_seq: int = 0
    stream: Stream | None = None
    zombies: list[Stream] = field(default_factory=list)
    """Earlier streams not yet torn down by their server (they still hear acks)."""


class IngestMachine(RuleBasedStateMachine):
    """Writers, replicas and failures in generated order; the engine's promises hold."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store = FakeMetricStore()
        self.engines: list[WatchedEngine] = []
        self.clients = [Client() for _ in WRITERS]
        self.subscribers: list[RecordingSubscriber] = []
        self.unary: list[Unary] = []
        self.next_uid = 0
        self.must_abort: list[tuple[RecordingSubscriber, int]] = []
        self.readers: list[asyncio.Task[None]] = []
        self.cap = 0
        self.budget = 0
        self.lanes = 1
        self.lane_mix: list[tuple[WriterKey, ...]] = []

    # -- plumbing --------------------------------------------------------------------

    def _do(self, coro: Awaitable[Any], yields: int = 0) -> Any:
        async def body() -> Any:
            result = await coro
            for _ in range(yields):
                await asyncio.sleep(0)
            return result

        result = self.loop.run_until_complete(body())
        self._reap()
        return result

    def _reap(self) -> None:
        """An aborted stream ends at once (the servicer aborts the call)."""
        for client in self.clients:
            stream = client.stream
            if stream is not None and stream.sub.aborts:
                self._end(stream)
                client.stream = None

    def _end(self, stream: Stream) -> None:
        """Tear a stream down as the servicer does: cancel its reader, then close."""
        if stream.task is not None:
            stream.task.cancel()
        self.engines[stream.engine].close(WRITERS[stream.writer].key, stream.sub)

    def _live(self, writer: int, engine: int) -> list[Stream]:
        client = self.clients[writer]
        streams = [*client.zombies, *([client.stream] if client.stream else [])]
        return [s for s in streams if s.engine == engine]

    def _on_commit(self, engine: int, record: CommitRecord) -> None:
        """A commit that returns with a gap must abort every stream of that writer."""
        if len({lane_index(k, self.lanes) for k in record.writers}) > 1:
            self.lane_mix.append(record.writers)
        if record.error is not None or record.plan is None:
            return
        for key in record.plan.gaps:
            for stream in self._live(INDEX[key], engine):
                self.must_abort.append((stream.sub, len(stream.sub.aborts)))

    # -- rules -----------------------------------------------------------------------

    @initialize(
        replicas=st.integers(1, 2),
        cap_batches=st.integers(1, 4),
        budget_batches=st.integers(1, 8),
        round_trip_yields=st.integers(1, 8),
        lanes=st.integers(1, 3),
        pipeline=st.booleans(),
    )
    def start(
        self, replicas: int, cap_batches: int, budget_batches: int, round_trip_yields: int,
        lanes: int, pipeline: bool,
    ) -> None:
        """Start the replicas: small flush caps and budgets, so both bind; slow or fast
        database round trips, so more or less happens while a commit runs; one to
        three flush lanes, with or without building the next flush during a commit."""
        self.store.round_trip_yields = round_trip_yields
        self.cap = cap_batches * MAX_BATCH_BYTES
        self.budget = budget_batches * MAX_BATCH_BYTES
        config = EngineConfig(
            flush_interval_s=0.0, flush_bytes=self.cap, memory_budget_bytes=self.budget,
            slow_down_s=0.01, retry_max_s=0.0, max_flush_bytes=self.cap,
            lanes=lanes, pipeline=pipeline,
        )
        self.lanes = lanes
        for i in range(replicas):
            store = self.store if i == 0 else self.store.replica()
            store.on_commit = lambda record, e=i: self._on_commit(e, record)
            self.engines.append(WatchedEngine(store, config))

        async def go() -> None:
            for engine in self.engines:
                engine.start()

        self._do(go())

    @rule(writer=st.integers(0, 2), engine=st.integers(0, 1), back=st.integers(0, 2),
          keep_old=st.booleans())
    def connect(self, writer: int, engine: int, back: int, keep_old: bool) -> None:
        """(Re)connect: Open, then resend from the committed seq (``back`` too early)."""
        engine %= len(self.engines)
        client = self.clients[writer]
        if client.stream is not None:
            old = client.stream
            client.stream = None
            if keep_old:  # the old call lingers on its server; its reader is gone
                if old.task is not None:
                    old.task.cancel()
                client.zombies.append(old)
            else:
                self._end(old)
        sub = RecordingSubscriber(self.store, WRITERS[writer].key)
        self.subscribers.append(sub)

        async def open_stream() -> None:
            committed = await self.engines[engine].open(WRITERS[writer], sub)
            stream = Stream(writer, engine, sub, max(1, committed + 1 - back))
            stream.task = asyncio.create_task(stream.read(self.engines[engine]))
            self.readers.append(stream.task)
            client.stream = stream

        self._do(open_stream())

    @rule(writer=st.integers(0, 2), count=st.integers(1, 4), yields=st.integers(0, 6))
    def send(self, writer: int, count: int, yields: int) -> None:
        """The client sends ``count`` more batches on its stream."""
        client = self.clients[writer]
        stream = client.stream
        if stream is None:
            return
        for seq in range(stream.next_seq, stream.next_seq + count):
            stream.inbox.put_nowait(seq)
        stream.unread += count
        stream.next_seq += count
        client.max_seq = max(client.max_seq, stream.next_seq - 1)
        self._do(asyncio.sleep(0), yields)

    @rule(writer=st.integers(0, 2), back=st.integers(1, 3))
    def rewind(self, writer: int, back: int) -> None:
        """The stream sends some batches again (duplicates of buffered or committed)."""
        stream = self.clients[writer].stream
        if stream is not None:
            stream.next_seq = max(1, stream.next_seq - back)

    @rule(writer=st.integers(0, 2))
    def lose_one(self, writer: int) -> None:
        """A batch is lost on the way: the engine must see a gap, not skip it."""
        client = self.clients[writer]
        if client.stream is not None:
            client.max_seq = max(client.max_seq, client.stream.next_seq)
            client.stream.next_seq += 1

    @rule(writer=st.integers(0, 2), engine=st.integers(0, 1), ahead=st.integers(0, 3),
          yields=st.integers(0, 6))
    def unary_sequenced(self, writer: int, engine: int, ahead: int, yields: int) -> None:
        """LogMetrics with a seq near the committed one (0: a replay, >1: a gap)."""
        engine %= len(self.engines)
        seq = max(1, self.engines[engine].committed_seq(WRITERS[writer].key) + ahead)
        client = self.clients[writer]
        client.max_seq = max(client.max_seq, seq)
        call = log_metrics(self.engines[engine], WRITERS[writer], sequenced_batch(writer, seq))
        self._spawn_unary(writer, engine, seq, -1, call, yields)

    @rule(writer=st.integers(0, 2), engine=st.integers(0, 1), yields=st.integers(0, 6))
    def unary_unsequenced(self, writer: int, engine: int, yields: int) -> None:
        """LogMetrics with seq 0: outside sequencing, committed once."""
        engine %= len(self.engines)
        uid = self.next_uid
        self.next_uid += 1
        batch = tagged_batch(0, unseq_tags(uid))
        call = log_metrics(self.engines[engine], WRITERS[writer], batch)
        self._spawn_unary(writer, engine, 0, uid, call, yields)

    def _spawn_unary(self, writer: int, engine: int, seq: int, uid: int,
                     call: Coroutine[Any, Any, int], yields: int) -> None:
        async def spawn() -> None:
            task = asyncio.ensure_future(call)
            self.unary.append(Unary(writer, engine, seq, uid, task))

        self._do(spawn(), yields)

    @rule(pick=st.integers(0, 50), yields=st.integers(0, 6))
    def cancel_unary(self, pick: int, yields: int) -> None:
        """A unary call's deadline passes: the server cancels its handler."""
        running = [u for u in self.unary if not u.task.done()]
        if running:
            running[pick % len(running)].task.cancel()
        self._do(asyncio.sleep(0), yields)

    @rule(stage=st.sampled_from(Stage), count=st.integers(1, 3), bug=st.booleans())
    def fail(self, stage: Stage, count: int, bug: bool) -> None:
        """The next commits fail (retryable, or an unexpected exception)."""
        error = RuntimeError("injected bug") if bug else None
        self.store.inject(*[Failure(stage, error)] * count)

    @rule(yields=st.integers(1, 40))
    def run(self, yields: int) -> None:
        """Time passes: flushes, acks, retries."""
        self._do(asyncio.sleep(0), yields)

    @rule(writer=st.integers(0, 2))
    def hang_up(self, writer: int) -> None:
        """The client closes its stream."""
        client = self.clients[writer]
        if client.stream is not None:
            self._end(client.stream)
            client.stream = None

    # -- invariants ------------------------------------------------------------------

    @invariant()
    def acks_follow_commits(self) -> None:
        """Acks never go backwards and never run ahead of what is durable."""
        for sub in self.subscribers:
            assert not sub.problems(), sub.problems()

    @invariant()
    def gaps_are_reported(self) -> None:
        """Every stream live when its writer hit a gap was told to reconnect."""
        for sub, before in self.must_abort:
            assert len(sub.aborts) > before
            assert all(e.code is Code.ABORTED for e in sub.aborts)

    @invariant()
    def lanes_own_their_writers(self) -> None:
        """A transaction locks the writers of one lane only."""
        assert not self.lane_mix, self.lane_mix

    @invariant()
    def flushers_alive(self) -> None:
        """No flush ends the flusher (it would stop committing for good)."""
        for engine in self.engines:
            assert len(engine._tasks) == engine.lanes
            for task in engine._tasks:
                assert not task.done(), task.exception()

    @invariant()
    def budget_accounting(self) -> None:
        """Buffered bytes are never negative; the budget flag and event agree with them;
        over budget, each caller adds at most one batch (``WatchedEngine``)."""
        for engine in self.engines:
            assert not engine.violations, engine.violations
            assert engine.buffered_bytes >= 0
            assert engine.over_budget() == (engine.buffered_bytes >= self.budget)
            assert engine._below_budget.is_set() == (not engine.over_budget())

    @invariant()
    def flushes_are_bounded(self) -> None:
        """One flush takes at most ``max_flush_bytes`` plus one batch."""
        for engine in self.engines:
            for r in engine.reports:
                assert 0 < r.nbytes < self.cap + MAX_BATCH_BYTES, (r.nbytes, self.cap)

    @invariant()
    def unary_answers(self) -> None:
        """A unary call answers with a durable seq covering its batch, or ABORTED."""
        for call in self.unary:
            if not call.task.done() or call.task.cancelled():
                continue
            error = call.task.exception()
            key = WRITERS[call.writer].key
            if error is not None:
                assert isinstance(error, TrackerError) and error.code is Code.ABORTED, error
                assert call.seq > 0  # unsequenced batches are retried, never refused
            else:
                assert call.task.result() <= self.store.committed_seq(key)
                assert call.task.result() >= call.seq

    # -- the end: everything resent, then exactly once -------------------------------

    def teardown(self) -> None:
        try:
            if self.engines:
                self._finish()
        finally:
            left = asyncio.all_tasks(self.loop)  # only after a failure
            for task in left:
                task.cancel()
            if left:
                self.loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            self.loop.close()

    def _finish(self) -> None:
        self.store.clear_failures()
        self._label()
        self.loop.run_until_complete(self._drain())
        self._check_stored()

    def _label(self) -> None:
        """What this example exercised (``--hypothesis-show-statistics``)."""
        event(f"replicas: {len(self.engines)}")
        records = self.store.all_commits
        if any(r.plan is not None and r.plan.gaps and r.error is None for r in records):
            event("a gap was reported")
        if any(r.durable and r.plan is not None and r.committed_before[k] > 0
               and k not in r.plan.offsets for r in records for k in r.writers):
            event("a flush found all its batches of a writer committed already")
        if any(r.error is not None for r in records):
            event("a commit failed")
        if any(r.durable and r.error is not None for r in records):
            event("a commit reply was lost")
        if any(rep.nbytes >= self.cap for engine in self.engines for rep in engine.reports):
            event("the flush cap bound")
        event(f"lanes: {self.lanes}")
        if any(r.rebuilt for engine in self.engines for r in engine.reports):
            event("a plan built ahead was rebuilt in its transaction")
        if any(engine.store_overlap for engine in self.engines):
            event("a flush was built while another committed")
        if any(engine.went_over for engine in self.engines):
            event("over budget")
        if any(sub.slow_downs for sub in self.subscribers):
            event("a stream was told to slow down")

    async def _drain(self) -> None:
        for stream in [c.stream for c in self.clients if c.stream is not None]:
            await self._half_close(stream)
        assert await settle(lambda: all(u.task.done() for u in self.unary)), "a call hangs"
        self.unary_answers()
        for reader in self.readers:
            assert reader.cancelled() or not reader.done() or reader.exception() is None, (
                reader.exception()
            )
        for c in self.clients:
            for stream in [*c.zombies, *([c.stream] if c.stream else [])]:
                self._end(stream)
            c.stream, c.zombies = None, []
        assert await settle(lambda: all(e.buffered_bytes == 0 for e in self.engines))
        for w, client in enumerate(self.clients):
            if client.max_seq:
                await self._resend(w, client.max_seq)
        for e in self.engines:
            await e.stop(1)
            assert all(t.done() and t.exception() is None for t in e._tasks)
            assert e.buffered_bytes == 0
            assert not e._writers  # nothing left behind once every call has ended

    async def _half_close(self, stream: Stream) -> None:
        """The client half-closes: the stream waits for the ack of everything it sent
        (the servicer adds one from the engine's committed seq), unless aborted."""
        engine = self.engines[stream.engine]
        key = WRITERS[stream.writer].key
        task = stream.task
        assert task is not None
        assert await settle(lambda: stream.unread == 0 or task.done()), "a reader hangs"
        assert not task.done(), task.exception()

        def acked() -> bool:
            last = max([engine.committed_seq(key), *stream.sub.acks])
            return bool(stream.sub.aborts) or last >= stream.last_sent

        assert await settle(acked), f"w{stream.writer}: not acked through {stream.last_sent}"
        assert engine.committed_seq(key) <= self.store.committed_seq(key)

    async def _resend(self, w: int, last: int) -> None:
        """A new stream to the first replica resends everything not yet durable."""
        engine = self.engines[0]
        key = WRITERS[w].key
        sub = RecordingSubscriber(self.store, key)
        self.subscribers.append(sub)

        async def resend() -> int:
            committed = await engine.open(WRITERS[w], sub)
            for seq in range(committed + 1, last + 1):
                await stream_send(engine, WRITERS[w], sequenced_batch(w, seq))
            return committed

        sending = asyncio.ensure_future(resend())
        assert await settle(sending.done), f"w{w}: resending hangs"
        committed = sending.result()
        assert await settle(lambda: self.store.committed_seq(key) >= last), f"w{w}: not durable"
        if committed < last:
            assert sub.acks and sub.acks[-1] == last and not sub.aborts
        engine.close(key, sub)

    def _check_stored(self) -> None:
        for w, client in enumerate(self.clients):
            assert self.store.committed_seq(WRITERS[w].key) == client.max_seq
        # Each durable commit wrote, per writer, exactly the batches after its locked
        # seq through its new seq; commits of one writer follow each other.
        reached = {w.key: 0 for w in WRITERS}
        reply_lost: Counter[int] = Counter()
        for record in self.store.all_commits:
            if not record.durable:
                continue
            assert record.plan is not None
            written: dict[int, Counter[int]] = {i: Counter() for i in range(len(WRITERS))}
            uids = set()
            for tag in plan_tags(record.plan):
                kind, who, _ = decode(tag)
                if kind == "seq":
                    written[who][tag] += 1
                else:
                    uids.add(who)
            if record.error is not None:
                reply_lost.update(uids)
            for key in record.writers:
                before = record.committed_before[key]
                after = record.plan.offsets.get(key, before)
                assert before == reached[key] and after >= before
                reached[key] = after
                w = INDEX[key]
                expected = Counter(t for s in range(before + 1, after + 1)
                                   for t in seq_tags(w, s))
                assert written[w] == expected, (w, before, after)
            for w, tags in written.items():
                assert WRITERS[w].key in record.writers or not tags
        # Overall: each sequenced batch once; each unsequenced batch once, plus once more
        # per commit whose reply was lost (seq 0 has nothing to deduplicate a retry by).
        stored = Counter(p.wall_ns for p in self.store.points())
        expected = Counter(t for w, c in enumerate(self.clients)
                           for s in range(1, c.max_seq + 1) for t in seq_tags(w, s))
        for call in self.unary:
            if call.uid < 0:
                continue
            copies = 1 + reply_lost[call.uid]
            if call.task.cancelled() and unseq_tags(call.uid):
                # Cancelled before or after its batch was buffered: absent, or as usual.
                copies = stored[unseq_tags(call.uid)[0]]
                assert copies in (0, 1 + reply_lost[call.uid])
            expected.update({t: copies for t in unseq_tags(call.uid)})
        assert stored == expected
        for sub in self.subscribers:
            assert not sub.problems()


IngestMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None,
)
TestIngestMachine = IngestMachine.TestCase


@settings(max_examples=40, deadline=None)
@given(
    calls=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 5)), min_size=1, max_size=12),
    failures=st.lists(st.tuples(st.sampled_from([Stage.BEFORE_PLAN, Stage.AFTER_WRITE]),
                                st.booleans()), max_size=4),
    cap_batches=st.integers(1, 4),
)
def test_unsequenced_batches_commit_once_each(
    calls: list[tuple[int, int]], failures: list[tuple[Stage, bool]], cap_batches: int
) -> None:
    """Concurrent seq-0 LogMetrics calls, some of one writer, while commits fail: each
    call returns once its batch is durable, and each batch is stored exactly once."""

    async def body() -> None:
        store = FakeMetricStore()
        store.inject(*[Failure(stage, RuntimeError("bug") if bug else None)
                       for stage, bug in failures])
        engine = IngestEngine(store, EngineConfig(
            flush_interval_s=0.0, retry_max_s=0.0, max_flush_bytes=cap_batches * MAX_BATCH_BYTES,
        ), INLINE)
        engine.start()
        tasks = []
        for uid, (writer, delay) in enumerate(calls):
            batch = tagged_batch(0, unseq_tags(uid))
            tasks.append(asyncio.ensure_future(log_metrics(engine, WRITERS[writer], batch)))
            for _ in range(delay):
                await asyncio.sleep(0)
        assert await settle(lambda: all(t.done() for t in tasks))
        assert [t.result() for t in tasks] == [0] * len(calls)
        stored = Counter(p.wall_ns for p in store.points())
        assert stored == Counter(t for uid in range(len(calls)) for t in unseq_tags(uid))
        assert engine.buffered_bytes == 0 and not engine._writers
        await engine.stop(1)

    asyncio.run(body())
