"""The ingest engine: exactly-once sequencing, coalescing, flushing, acks, budget.

Streams (and unary calls) hand validated batches to the engine. A single flusher task
commits everything buffered when the buffered size passes ``flush_bytes`` or the oldest
point has waited ``flush_interval``; one flush is in flight at a time while new batches
keep arriving. Inside the flush transaction the store locks the writers' offset rows
and asks :func:`plan_commit` which batches follow each writer's committed seq
contiguously: a batch already committed by any server is skipped, so a stale buffer
can never be written twice (fencing). Acks go out only after COMMIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import structlog

from tracker_server.domain.chunking import ChunkSet, SummarySet, build_chunks
from tracker_server.domain.errors import Code, TrackerError
from tracker_server.domain.points import PointBatch, WriterInfo, WriterKey

log = structlog.get_logger(__name__)


@dataclass
class CommitPlan:
    """What one flush transaction writes."""

    chunks: ChunkSet | None
    summaries: SummarySet | None
    offsets: dict[WriterKey, int]
    """New committed seq per writer (only writers that advanced)."""
    gaps: set[WriterKey] = field(default_factory=set)
    """Writers whose buffered batches do not follow their committed seq."""
    committed_before: dict[WriterKey, int] = field(default_factory=dict)
    """Committed seq per writer as locked in the transaction (other servers' progress)."""


class MetricStore(Protocol):
    """What the engine needs from storage."""

    async def open_writer(self, info: WriterInfo) -> int:
        """Check the run and attempt; return the writer's committed seq (0 if new)."""

    async def resolve_keys(self, names: list[str]) -> list[int]:
        """Global key ids of metric names, creating missing ones."""

    async def commit(
        self,
        writers: list[WriterInfo],
        plan: Callable[[dict[WriterKey, int]], CommitPlan],
    ) -> CommitPlan:
        """In one transaction: lock the writers' offsets, call ``plan`` with their
        committed seqs, write its chunks, summaries and offsets, commit."""


class Subscriber(Protocol):
    """A stream that wants to hear about its writer's progress."""

    def on_ack(self, committed_seq: int) -> None:
        """Everything through ``committed_seq`` is durable."""

    def on_abort(self, error: TrackerError) -> None:
        """The stream must end with ``error`` (the client reconnects and resends)."""

    def on_slow_down(self, retry_after_s: float) -> None:
        """The server is over budget or the database is failing."""


@dataclass
class _Entry:
    info: WriterInfo
    batch: PointBatch


@dataclass
class _Writer:
    info: WriterInfo
    committed: int = 0
    pending: dict[int, _Entry] = field(default_factory=dict)
    inflight: dict[int, _Entry] = field(default_factory=dict)
    unsequenced: list[tuple[_Entry, asyncio.Future[int]]] = field(default_factory=list)
    unsequenced_inflight: int = 0
    subscribers: set[Subscriber] = field(default_factory=set)
    waiters: list[tuple[int, asyncio.Future[int]]] = field(default_factory=list)
    holders: int = 0
    """Opens without a subscriber (unary calls) not yet released."""


@dataclass(frozen=True)
class EngineConfig:
    """Engine tuning, from Settings."""

    flush_interval_s: float = 0.1
    flush_bytes: int = 8 << 20
    memory_budget_bytes: int = 256 << 20
    slow_down_s: float = 0.2
    retry_max_s: float = 5.0
    max_flush_bytes: int = 16 << 20
    """Most buffered bytes one flush transaction takes (bounds its transient memory)."""


def plan_commit(
    committed: dict[WriterKey, int],
    batches: dict[WriterKey, list[_Entry]],
    unsequenced: list[_Entry],
) -> CommitPlan:
    """Choose, per writer, the batches that follow its committed seq without a gap."""
    offsets: dict[WriterKey, int] = {}
    gaps: set[WriterKey] = set()
    rows: list[tuple[WriterInfo, PointBatch]] = []
    for writer, entries in batches.items():
        done = committed.get(writer, 0)
        expected = done + 1
        for entry in sorted(entries, key=lambda e: e.batch.seq):
            seq = entry.batch.seq
            if seq < expected:
                continue  # committed already, here or by another server: fencing
            if seq != expected:
                gaps.add(writer)
                break
            if entry.batch.n:
                rows.append((entry.info, entry.batch))
            expected += 1
        if expected - 1 > done:
            offsets[writer] = expected - 1
    # An empty unsequenced batch has nothing to write (and no seq to consume).
    rows.extend((e.info, e.batch) for e in unsequenced if e.batch.n)
    if rows:
        chunks, summaries = build_chunks(rows)
        return CommitPlan(chunks, summaries, offsets, gaps, dict(committed))
    return CommitPlan(None, None, offsets, gaps, dict(committed))


@dataclass(frozen=True)
class FlushReport:
    """What one flush did, for telemetry (one report per flush, never per batch)."""

    points: int
    rows: int
    batches: int
    nbytes: int
    started_ns: int
    duration_s: float
    ok: bool


FlushObserver = Callable[[FlushReport], None]


class IngestEngine:
    """Coalesces batches from every stream and commits them exactly once."""

    def __init__(self, store: MetricStore, config: EngineConfig) -> None:
        self._store = store
        self._config = config
        self._writers: dict[WriterKey, _Writer] = {}
        self._buffered_bytes = 0
        self._pending_bytes = 0
        self._oldest_pending: float | None = None
        self._wake = asyncio.Event()
        self._below_budget = asyncio.Event()
        self._below_budget.set()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._failures = 0
        self._rotation = 0
        self.flush_observer: FlushObserver | None = None
        """Called after every flush (telemetry); must be cheap and must not raise."""

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the flusher task."""
        self._task = asyncio.create_task(self._run(), name="ingest-flusher")

    async def stop(self, timeout_s: float) -> None:
        """Flush what is buffered (bounded by ``timeout_s``), then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            log.warning("ingest.stop_timeout", buffered_bytes=self._buffered_bytes)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def buffered_bytes(self) -> int:
        """Bytes of points accepted but not yet committed."""
        return self._buffered_bytes

    # -- writers and batches ---------------------------------------------------------

    async def open(self, info: WriterInfo, subscriber: Subscriber | None = None) -> int:
        """Register a writer (and its stream); return its durable committed seq.

        An open without a subscriber (a unary call) holds the writer until the matching
        :meth:`release`, so a concurrent call's release cannot forget it meanwhile.
        """
        committed = await self._store.open_writer(info)
        state = self._writers.get(info.key)
        if state is None:
            state = self._writers[info.key] = _Writer(info, committed)
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
        state.pending[seq] = _Entry(info, batch)
        self._account(batch.nbytes)
        return True

    async def submit_unsequenced(self, info: WriterInfo, batch: PointBatch) -> int:
        """Buffer a batch outside sequencing (unary seq 0); wait for its commit."""
        state = self._writers.get(info.key)
        if state is None:
            raise TrackerError(Code.FAILED_PRECONDITION, "writer not opened")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        state.unsequenced.append((_Entry(info, batch), fut))
        self._account(batch.nbytes)
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

    def _account(self, nbytes: int) -> None:
        self._buffered_bytes += nbytes
        self._pending_bytes += nbytes
        if self._oldest_pending is None:
            self._oldest_pending = time.monotonic()
        if self._buffered_bytes >= self._config.memory_budget_bytes:
            self._below_budget.clear()
        if self._pending_bytes >= self._config.flush_bytes:
            self._wake.set()
        elif self._pending_bytes == nbytes:
            self._wake.set()  # first pending batch starts the flush-interval clock

    def over_budget(self) -> bool:
        """True while buffered points exceed the memory budget."""
        return self._buffered_bytes >= self._config.memory_budget_bytes

    async def wait_for_budget(self) -> None:
        """Return once buffered points are below the memory budget."""
        await self._below_budget.wait()

    def _release(self, nbytes: int) -> None:
        self._buffered_bytes -= nbytes
        if self._buffered_bytes < self._config.memory_budget_bytes:
            self._below_budget.set()

    # -- flushing --------------------------------------------------------------------

    async def _run(self) -> None:
        cfg = self._config
        while True:
            if self._pending_bytes == 0:  # unsequenced batches count here too
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            oldest = self._oldest_pending or time.monotonic()
            while self._pending_bytes < cfg.flush_bytes and not self._stopping:
                remaining = oldest + cfg.flush_interval_s - time.monotonic()
                if remaining <= 0:
                    break
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), remaining)
            ok = await self._flush_once()
            if not ok:
                delay = min(cfg.retry_max_s, 0.05 * 2 ** min(self._failures, 10))
                await asyncio.sleep(delay * (0.5 + random.random() / 2))

    def _take(self, cap: int) -> tuple[
        dict[WriterKey, list[_Entry]], list[tuple[_Entry, asyncio.Future[int]]], list[WriterInfo]
    ]:
        """Move up to ``cap`` bytes of pending batches in flight, lowest seqs first
        (unsequenced batches count against the cap too, in arrival order).

        The cap bounds the transient memory of one flush (numpy copies and the COPY
        payload are a few times the points' size). The starting writer rotates so a
        busy writer cannot starve the others when the cap binds.
        """
        taken: dict[WriterKey, list[_Entry]] = {}
        unseq: list[tuple[_Entry, asyncio.Future[int]]] = []
        writers: list[WriterInfo] = []
        size = 0
        states = list(self._writers.items())
        if states:
            self._rotation = (self._rotation + 1) % len(states)
            states = states[self._rotation:] + states[: self._rotation]
        for key, state in states:
            if size >= cap:
                break
            if state.pending:
                chosen = []
                for seq in sorted(state.pending):
                    if size >= cap:
                        break
                    entry = state.pending.pop(seq)
                    state.inflight[seq] = entry
                    chosen.append(entry)
                    size += entry.batch.nbytes
                taken[key] = chosen
                writers.append(state.info)
            taken_unseq = 0
            for item in state.unsequenced:
                if size >= cap:
                    break
                size += item[0].batch.nbytes
                unseq.append(item)
                taken_unseq += 1
            if taken_unseq:
                del state.unsequenced[:taken_unseq]
                state.unsequenced_inflight += taken_unseq
        self._pending_bytes = max(0, self._pending_bytes - size)
        if not self._pending_bytes:
            self._oldest_pending = None  # otherwise the rest is already due: flush again
        return taken, unseq, writers

    async def _flush_once(self) -> bool:
        taken, unseq, writers = self._take(self._config.max_flush_bytes)
        if not taken and not unseq:
            return True
        started = time.perf_counter()
        started_ns = time.time_ns()
        try:
            plan = await self._store.commit(
                sorted(writers, key=lambda w: w.key),
                lambda committed: plan_commit(committed, taken, [e for e, _ in unseq]),
            )
        except Exception as exc:
            self._failures += 1
            self._requeue(taken, unseq)
            retryable = isinstance(exc, TrackerError) and exc.code is Code.UNAVAILABLE
            log.warning("ingest.flush_failed", error=repr(exc), retryable=retryable,
                        failures=self._failures)
            for key in taken:
                for sub in list(self._writers[key].subscribers):
                    sub.on_slow_down(self._config.slow_down_s)
            self._report(taken, unseq, None, started_ns, started)
            return False
        self._failures = 0
        points = plan.chunks.points if plan.chunks else 0
        log.debug("ingest.flushed", points=points, writers=len(taken),
                  ms=round((time.perf_counter() - started) * 1000, 2))
        self._complete(plan, taken, unseq)
        self._report(taken, unseq, plan, started_ns, started)
        return True

    def _report(
        self,
        taken: dict[WriterKey, list[_Entry]],
        unseq: list[tuple[_Entry, asyncio.Future[int]]],
        plan: CommitPlan | None,
        started_ns: int,
        started: float,
    ) -> None:
        if self.flush_observer is None:
            return
        entries = [e for es in taken.values() for e in es] + [e for e, _ in unseq]
        chunks = plan.chunks if plan is not None else None
        self.flush_observer(FlushReport(
            points=chunks.points if chunks else 0,
            rows=chunks.rows if chunks else 0,
            batches=len(entries),
            nbytes=sum(e.batch.nbytes for e in entries),
            started_ns=started_ns,
            duration_s=time.perf_counter() - started,
            ok=plan is not None,
        ))

    def _requeue(
        self,
        taken: dict[WriterKey, list[_Entry]],
        unseq: list[tuple[_Entry, asyncio.Future[int]]],
    ) -> None:
        for key, entries in taken.items():
            state = self._writers[key]
            for entry in entries:
                state.inflight.pop(entry.batch.seq, None)
                state.pending.setdefault(entry.batch.seq, entry)
                self._pending_bytes += entry.batch.nbytes
        for entry, fut in reversed(unseq):  # back in front, in their order
            state = self._writers[entry.info.key]
            state.unsequenced.insert(0, (entry, fut))
            state.unsequenced_inflight -= 1
            self._pending_bytes += entry.batch.nbytes
        if self._oldest_pending is None:
            self._oldest_pending = time.monotonic()

    def _complete(
        self,
        plan: CommitPlan,
        taken: dict[WriterKey, list[_Entry]],
        unseq: list[tuple[_Entry, asyncio.Future[int]]],
    ) -> None:
        for entry, fut in unseq:
            self._release(entry.batch.nbytes)
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
                self._release(entry.batch.nbytes)
            # Batches that arrived during the flush and are now covered are replays.
            for seq in [s for s in state.pending if s <= state.committed]:
                nbytes = state.pending.pop(seq).batch.nbytes
                self._pending_bytes -= nbytes
                self._release(nbytes)
            self._notify(key, state, gap=key in plan.gaps)
        # A unary call cancelled while its batch was in flight left its writer to us.
        for key in {*taken, *(e.info.key for e, _ in unseq)}:
            if key in self._writers:
                self._maybe_forget(key, self._writers[key])

    def _notify(self, key: WriterKey, state: _Writer, gap: bool) -> None:
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
