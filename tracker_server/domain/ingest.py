"""The ingest engine: exactly-once sequencing, coalescing, flush lanes, acks, budget.

Streams (and unary calls) hand validated batches to the engine. Writers are spread over
``lanes`` flush lanes by a hash of their key (``flush_lanes``); each lane commits the
batches of its own writers, one transaction at a time, so lanes never wait for each
other's writer-offset locks and a writer's acks keep their order. The memory budget
is one for the whole engine.

Inside each flush transaction the store locks the writers' offset rows and reads their
committed seqs; :func:`plan_commit` keeps, per writer, the batches that follow them
contiguously, so a batch already committed by any server is skipped and a stale buffer
can never be written twice (fencing). Acks go out only after COMMIT; a stream is told
to slow down while the database fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import structlog

from tracker_server.domain.commit_plan import CommitPlan, Entry, Planner, plan_commit
from tracker_server.domain.errors import Code, TrackerError
from tracker_server.domain.flush_lanes import FlushLanes, FlushReport, Lane, WriterState
from tracker_server.domain.points import PointBatch, WriterInfo, WriterKey

__all__ = [
    "CommitPlan", "EngineConfig", "Entry", "FlushReport", "IngestEngine", "MetricStore",
    "Planner", "Subscriber", "_Entry", "plan_commit",
]

_Entry = Entry  # the name the plan tests use

log = structlog.get_logger(__name__)


class MetricStore(Protocol):
    """What the engine needs from storage."""

    async def open_writer(self, info: WriterInfo) -> int:
        """Check the run and attempt; return the writer's committed seq (0 if new)."""

    async def resolve_keys(self, names: list[str]) -> list[int]:
        """Global key ids of metric names, creating missing ones."""

    def prepare(self, plan: CommitPlan) -> None:
        """Encode ``plan``'s rows for writing into ``plan.payload`` (CPU only, no I/O;
        called in an executor thread while another flush commits)."""

    async def commit(
        self,
        writers: list[WriterInfo],
        plan: Planner,
    ) -> CommitPlan:
        """In one transaction: lock the writers' offsets, call ``plan`` with their
        committed seqs (possibly in a thread) and the writers it cannot take now, if
        any; write its chunks (``payload`` when set), summaries and offsets, commit."""


class Subscriber(Protocol):
    """A stream that wants to hear about its writer's progress."""

    def on_ack(self, committed_seq: int) -> None:
        """Everything through ``committed_seq`` is durable."""

    def on_abort(self, error: TrackerError) -> None:
        """The stream must end with ``error`` (the client reconnects and resends)."""

    def on_slow_down(self, retry_after_s: float) -> None:
        """The server is over budget or the database is failing."""

    def on_drain(self) -> None:
        """The server is shutting down: stop reading the stream. What was read is
        committed and acknowledged, then :meth:`on_abort` ends the stream."""


@dataclass(frozen=True)
class EngineConfig:
    """Engine tuning, from Settings."""

    flush_interval_s: float = 0.0
    """How long a lane lets the oldest waiting point linger for more before flushing;
    0 flushes as soon as the lane's previous flush is done (group commit)."""
    flush_bytes: int = 8 << 20
    """Flush without lingering once a lane has this much waiting."""
    memory_budget_bytes: int = 256 << 20
    slow_down_s: float = 0.2
    retry_max_s: float = 5.0
    max_flush_bytes: int = 16 << 20
    """Most buffered bytes one flush transaction takes (bounds its transient memory)."""
    lanes: int = 1
    """Flush lanes: transactions that commit at the same time."""
    pipeline: bool = True
    """Cut, chunk and encode a lane's next flush while its current one commits."""


@dataclass(eq=False)
class _Writer(WriterState):
    subscribers: set[Subscriber] = field(default_factory=set)
    waiters: list[tuple[int, asyncio.Future[int]]] = field(default_factory=list)
    holders: int = 0
    """Opens without a subscriber (unary calls) not yet released."""


class IngestEngine:
    """Coalesces batches from every stream and commits them exactly once."""

    def __init__(self, store: MetricStore, config: EngineConfig,
                 executor: Executor | None = None) -> None:
        """``executor`` builds and encodes flushes (default: a thread per lane)."""
        self._store = store
        self._config = config
        self._writers: dict[WriterKey, _Writer] = {}
        self._buffered_bytes = 0
        self._below_budget = asyncio.Event()
        self._below_budget.set()
        self._empty = asyncio.Event()
        self._empty.set()
        self._draining = False
        self._lanes = FlushLanes(store, config, self, executor)
        self.flush_observer: Callable[[FlushReport], None] | None = None
        """Called after every flush (telemetry); must be cheap and must not raise."""

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the flush lanes."""
        self._lanes.start()

    async def stop(self, timeout_s: float) -> None:
        """Flush what is buffered (bounded by ``timeout_s``), then stop."""
        if not await self._lanes.stop(timeout_s):
            log.warning("ingest.stop_timeout", buffered_bytes=self._buffered_bytes)

    async def drain(self, timeout_s: float) -> bool:
        """Shut ingest down gracefully: streams stop reading (``on_drain``), what was
        read is committed and acknowledged, then every stream ends with UNAVAILABLE
        (the client reconnects, to another server, at once). New streams are refused.
        Returns False if the buffered points were not all committed in ``timeout_s``."""
        self._draining = True
        self._lanes.wake_all()
        for state in list(self._writers.values()):
            for sub in list(state.subscribers):
                sub.on_drain()
        # Readers cancelled mid-batch may still hand in what they hold: wait a turn.
        await asyncio.sleep(0)
        done = True
        try:
            await asyncio.wait_for(self._empty.wait(), timeout_s)
        except TimeoutError:
            done = False
            log.warning("ingest.drain_timeout", buffered_bytes=self._buffered_bytes)
        error = TrackerError(Code.UNAVAILABLE, "the server is shutting down: reconnect")
        for state in list(self._writers.values()):
            for sub in list(state.subscribers):
                sub.on_abort(error)
        return done

    @property
    def draining(self) -> bool:
        """True once :meth:`drain` has begun."""
        return self._draining

    @property
    def buffered_bytes(self) -> int:
        """Bytes of points accepted but not yet committed."""
        return self._buffered_bytes

    @property
    def _pending_bytes(self) -> int:
        """Buffered bytes not yet taken by a flush (all lanes)."""
        return self._lanes.pending_bytes

    @property
    def _tasks(self) -> list[asyncio.Task[None]]:
        """The lanes' tasks (tests check they stay alive)."""
        return self._lanes.tasks

    @property
    def lanes(self) -> int:
        """Number of flush lanes."""
        return self._lanes.count

    # -- writers and batches ---------------------------------------------------------

    async def open(self, info: WriterInfo, subscriber: Subscriber | None = None) -> int:
        """Register a writer (and its stream); return its durable committed seq.

        An open without a subscriber (a unary call) holds the writer until the matching
        :meth:`release`, so a concurrent call's release cannot forget it meanwhile.
        While draining, a new stream is refused with UNAVAILABLE.
        """
        if subscriber is not None and self._draining:
            raise TrackerError(Code.UNAVAILABLE, "the server is shutting down: reconnect")
        committed = await self._store.open_writer(info)
        if subscriber is not None and self._draining:
            raise TrackerError(Code.UNAVAILABLE, "the server is shutting down: reconnect")
        state = self._writers.get(info.key)
        if state is None:
            lane = self._lanes.lane_of(info.key)
            state = _Writer(lane=lane, info=info, committed=committed)
            self._writers[info.key] = state
            lane.writers[info.key] = state
        else:
            state.info = info
            state.committed = max(state.committed, committed)
        if subscriber is not None:
            state.subscribers.add(subscriber)
        else:
            state.holders += 1
        return committed

    def close(self, writer: WriterKey, subscriber: Subscriber) -> None:
        """Forget a stream; buffered batches of its writer are still committed."""
        state = self._writers.get(writer)
        if state is None:
            return
        state.subscribers.discard(subscriber)
        self._maybe_forget(writer, state)

    def release(self, writer: WriterKey) -> None:
        """End one :meth:`open` without a stream; the writer is forgotten once no call
        holds it and nothing of it is buffered."""
        state = self._writers.get(writer)
        if state is not None:
            state.holders = max(0, state.holders - 1)
            self._maybe_forget(writer, state)

    def _maybe_forget(self, writer: WriterKey, state: _Writer) -> None:
        idle = not (state.subscribers or state.holders or state.pending or state.inflight
                    or state.waiters or state.unsequenced or state.unsequenced_inflight)
        if idle and self._writers.get(writer) is state:
            del self._writers[writer]
            state.lane.writers.pop(writer, None)

    async def resolve_keys(self, batch: PointBatch) -> None:
        """Fill ``batch.table_ids``: the global key id of each entry of its key table
        (points keep their local ``key_index``; chunking maps them per flush)."""
        ids = await self._store.resolve_keys(batch.keys)
        batch.table_ids = np.asarray(ids, dtype=np.int32)

    def committed_seq(self, writer: WriterKey) -> int:
        """Highest seq known committed for ``writer``."""
        state = self._writers.get(writer)
        return state.committed if state else 0

    def submit(self, info: WriterInfo, batch: PointBatch) -> bool:
        """Buffer a validated batch (key ids resolved). Returns False for a replay
        (seq already committed or already buffered), which the caller just acks."""
        state = self._writers.get(info.key)
        if state is None:
            raise TrackerError(Code.FAILED_PRECONDITION, "writer not opened")
        seq = batch.seq
        if seq <= state.committed or seq in state.pending or seq in state.inflight:
            return False
        state.pending[seq] = Entry(info, batch)
        self._account(batch.nbytes, state.lane)
        return True

    async def submit_unsequenced(self, info: WriterInfo, batch: PointBatch) -> int:
        """Buffer a batch outside sequencing (unary seq 0); wait for its commit."""
        state = self._writers.get(info.key)
        if state is None:
            raise TrackerError(Code.FAILED_PRECONDITION, "writer not opened")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        state.unsequenced.append((Entry(info, batch), fut))
        self._account(batch.nbytes, state.lane)
        try:
            return await fut
        finally:
            self._maybe_forget(info.key, state)

    async def wait_committed(self, writer: WriterKey, seq: int) -> int:
        """Wait until ``seq`` of ``writer`` is committed; return the committed seq."""
        state = self._writers[writer]
        if state.committed >= seq:
            return state.committed
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        state.waiters.append((seq, fut))
        try:
            return await fut
        finally:
            self._maybe_forget(writer, state)

    def _account(self, nbytes: int, lane: Lane) -> None:
        self._buffered_bytes += nbytes
        self._empty.clear()
        if self._buffered_bytes >= self._config.memory_budget_bytes:
            self._below_budget.clear()
        self._lanes.add_pending(lane, nbytes)

    def over_budget(self) -> bool:
        """True while buffered points exceed the memory budget."""
        return self._buffered_bytes >= self._config.memory_budget_bytes

    async def wait_for_budget(self) -> None:
        """Return once buffered points are below the memory budget."""
        await self._below_budget.wait()

    # -- what the lanes report back (FlushLanes calls these) --------------------------

    def release_bytes(self, nbytes: int) -> None:
        """Points of ``nbytes`` are no longer buffered (committed or dropped)."""
        self._buffered_bytes -= nbytes
        if self._buffered_bytes < self._config.memory_budget_bytes:
            self._below_budget.set()
        if self._buffered_bytes == 0:
            self._empty.set()

    def writer(self, key: WriterKey) -> _Writer:
        """The state of a writer with batches in a flush (never forgotten meanwhile)."""
        return self._writers[key]

    def flush_failed(self, writers: list[WriterKey]) -> None:
        """A flush failed: its writers' streams are told to slow down."""
        for key in writers:
            for sub in list(self._writers[key].subscribers):
                sub.on_slow_down(self._config.slow_down_s)

    def observe(self, report: FlushReport) -> None:
        """Hand one flush's report to the observer."""
        if self.flush_observer is not None:
            self.flush_observer(report)

    def complete(
        self,
        plan: CommitPlan,
        taken: dict[WriterKey, list[Entry]],
        unseq: list[tuple[Entry, asyncio.Future[int]]],
    ) -> None:
        """A flush committed ``plan``: release its batches, ack, wake waiters."""
        for entry, fut in unseq:
            self.release_bytes(entry.batch.nbytes)
            state = self._writers[entry.info.key]
            state.unsequenced_inflight -= 1
            if not fut.done():
                fut.set_result(state.committed)
        for key, entries in taken.items():
            state = self._writers[key]
            durable = plan.offsets.get(key, plan.committed_before.get(key, 0))
            state.committed = max(state.committed, durable)
            for entry in entries:
                # Committed, or beyond a gap (another server holds the missing seqs, or
                # they died with a stream): either way this server is done with it; after
                # a gap the stream is aborted and the client resends from the committed seq.
                state.inflight.pop(entry.batch.seq, None)
                self.release_bytes(entry.batch.nbytes)
            # Batches that arrived during the flush and are now covered are replays.
            for seq in [s for s in state.pending if s <= state.committed]:
                nbytes = state.pending.pop(seq).batch.nbytes
                self._lanes.take_pending(state.lane, nbytes)
                self.release_bytes(nbytes)
            self._notify(state, gap=key in plan.gaps)
        # A unary call cancelled while its batch was in flight left its writer to us.
        for key in {*taken, *(e.info.key for e, _ in unseq)}:
            if key in self._writers:
                self._maybe_forget(key, self._writers[key])

    def _notify(self, state: _Writer, gap: bool) -> None:
        for sub in list(state.subscribers):
            sub.on_ack(state.committed)
        ready = [(s, f) for s, f in state.waiters if s <= state.committed]
        state.waiters = [(s, f) for s, f in state.waiters if s > state.committed]
        for _, fut in ready:
            if not fut.done():
                fut.set_result(state.committed)
        if gap:
            error = TrackerError(
                Code.ABORTED,
                f"sequence gap after committed seq {state.committed}: reconnect and resend",
            )
            for sub in list(state.subscribers):
                sub.on_abort(error)
            for _, fut in state.waiters:
                if not fut.done():
                    fut.set_exception(error)
            state.waiters = []

