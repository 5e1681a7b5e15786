"""Flush lanes: how the ingest engine turns buffered batches into committed transactions.

Writers are spread over the lanes by a stable hash of their key (:func:`lane_index`).
A lane owns its writers' batches and commits them one transaction at a time, so its
writers' offsets are locked by it alone and their acks follow seq order; lanes commit
at the same time as each other (each transaction takes its own database connection).

A lane is a two-stage pipeline::

    cut N+1 -> chunk + encode N+1 (executor thread) -> wait for N -> commit N+1
               ^ runs while flush N is in COPY / COMMIT

A flush is cut as soon as data waits and the lane is free to build (group commit): at
low load a batch is committed about one build plus one commit after it arrived; under
load the flushes grow by themselves with what arrived during the previous one. A
positive ``flush_interval_s`` lets the first waiting point linger that long for more.
The next flush is planned against the committed seqs the flush in commit will leave
(its plan's offsets). Inside its transaction the locked seqs are compared with those;
when they differ (another server moved a writer on, or the flush before failed) the
plan is rebuilt from the locked seqs, so fencing never depends on the guess. A failed
commit puts its batches, and those of the flush built behind it, back in front.
"""

from __future__ import annotations

import asyncio
import random
import time
import zlib
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from tracker_server.domain.commit_plan import CommitPlan, Entry, plan_commit
from tracker_server.domain.errors import Code, TrackerError
from tracker_server.domain.points import WriterInfo, WriterKey

if TYPE_CHECKING:
    from tracker_server.domain.ingest import EngineConfig, MetricStore

log = structlog.get_logger(__name__)


def _average(current: float, sample: float) -> float:
    """Moving average of recent durations (the last few flushes weigh most)."""
    return sample if current == 0.0 else 0.7 * current + 0.3 * sample


def lane_index(key: WriterKey, lanes: int) -> int:
    """The lane of a writer: a hash of its key that is the same in every process."""
    if lanes <= 1:
        return 0
    return zlib.crc32(key.run_id.bytes + key.writer_id.encode()) % lanes


@dataclass(eq=False)
class Lane:
    """One flush lane: its writers and what of theirs waits for a flush."""

    index: int
    writers: dict[WriterKey, WriterState] = field(default_factory=dict)
    pending_bytes: int = 0
    oldest_pending: float | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    failures: int = 0
    rotation: int = 0
    ahead: dict[WriterKey, int] = field(default_factory=dict)
    """Committed seq per writer once the flush now in commit succeeds."""
    task: asyncio.Task[None] | None = None
    commit_s: float = 0.0
    """Recent commit time (moving average): when the commit now running should end."""
    build_s: float = 0.0
    """Recent build time (moving average): how early to cut the next flush."""
    commit_started: float = 0.0


@dataclass(eq=False)
class WriterState:
    """What the lanes keep of one writer (the engine adds its streams and waiters)."""

    lane: Lane
    info: WriterInfo
    committed: int = 0
    pending: dict[int, Entry] = field(default_factory=dict)
    inflight: dict[int, Entry] = field(default_factory=dict)
    unsequenced: list[tuple[Entry, asyncio.Future[int]]] = field(default_factory=list)
    unsequenced_inflight: int = 0


@dataclass(eq=False)
class Flush:
    """The batches of one flush and the plan built for them ahead of the commit."""

    lane: Lane
    taken: dict[WriterKey, list[Entry]]
    unseq: list[tuple[Entry, asyncio.Future[int]]]
    writers: list[WriterInfo]
    """Writers with sequenced batches, in lock order."""
    assumed: dict[WriterKey, int]
    """The committed seq per writer the plan is built for."""
    nbytes: int
    started: float
    started_ns: int
    plan: CommitPlan | None = None
    error: Exception | None = None
    """What building the plan raised."""
    rebuilt: bool = False
    """The locked seqs were not the assumed ones: planned again in the transaction."""
    built: float = 0.0
    """perf_counter when its plan was built (and when its commit began: ``committing``)."""
    committing: float = 0.0
    deferred: frozenset[WriterKey] = frozenset()
    """Writers the commit left for a later flush (their run was held elsewhere)."""
    only_deferred: bool = False
    """Committed nothing: every writer's run was held by another transaction."""


@dataclass(frozen=True)
class FlushReport:
    """What one flush did, for telemetry (one report per flush, never per batch)."""

    points: int
    rows: int
    batches: int
    nbytes: int
    started_ns: int
    duration_s: float
    """From the cut to the end of the commit (build, wait for the lane, commit)."""
    ok: bool
    lane: int = 0
    rebuilt: bool = False


class LaneHost(Protocol):
    """The engine, as the lanes see it."""

    def writer(self, key: WriterKey) -> WriterState:
        """State of a writer that has batches in a flush."""
        ...

    def complete(
        self,
        plan: CommitPlan,
        taken: dict[WriterKey, list[Entry]],
        unseq: list[tuple[Entry, asyncio.Future[int]]],
    ) -> None:
        """``plan`` is committed: release, ack, wake waiters."""
        ...

    def flush_failed(self, writers: list[WriterKey]) -> None:
        """A flush of these writers failed."""
        ...

    def observe(self, report: FlushReport) -> None:
        """One flush ended."""
        ...


class FlushLanes:
    """The engine's lanes, their tasks and the executor that builds their flushes."""

    def __init__(self, store: MetricStore, config: EngineConfig, host: LaneHost,
                 executor: Executor | None = None) -> None:
        self._store = store
        self._config = config
        self._host = host
        self._lanes = [Lane(i) for i in range(max(1, config.lanes))]
        self._given_executor = executor
        self._executor: Executor | None = executor
        self._stopping = False
        self._no_linger = False

    @property
    def count(self) -> int:
        """Number of lanes."""
        return len(self._lanes)

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The lanes' tasks."""
        return [lane.task for lane in self._lanes if lane.task is not None]

    @property
    def pending_bytes(self) -> int:
        """Bytes waiting for a flush, all lanes."""
        return sum(lane.pending_bytes for lane in self._lanes)

    def lane_of(self, key: WriterKey) -> Lane:
        """The lane that owns ``key``."""
        return self._lanes[lane_index(key, len(self._lanes))]

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start one task per lane."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(len(self._lanes),
                                                thread_name_prefix="ingest-build")
        for lane in self._lanes:
            lane.task = asyncio.create_task(self._run(lane), name=f"ingest-lane-{lane.index}")

    def wake_all(self) -> None:
        """Flush everything waiting now, without lingering (shutdown)."""
        self._no_linger = True
        for lane in self._lanes:
            lane.wake.set()

    async def stop(self, timeout_s: float) -> bool:
        """Flush what waits, then end the lanes; False if ``timeout_s`` cut that short."""
        self._stopping = True
        self.wake_all()
        tasks = self.tasks
        finished = True
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout_s)
            finished = not late
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        if self._executor is not None and self._executor is not self._given_executor:
            self._executor.shutdown(wait=False)
        return finished

    # -- buffering -------------------------------------------------------------------

    def add_pending(self, lane: Lane, nbytes: int) -> None:
        """A batch of ``nbytes`` waits in ``lane``."""
        lane.pending_bytes += nbytes
        if lane.oldest_pending is None:
            lane.oldest_pending = time.monotonic()
        if lane.pending_bytes == nbytes or lane.pending_bytes >= self._config.flush_bytes:
            lane.wake.set()  # the first waiting batch, or enough to flush at once

    def take_pending(self, lane: Lane, nbytes: int) -> None:
        """A waiting batch of ``nbytes`` left without a flush (a replay)."""
        lane.pending_bytes -= nbytes

    # -- the pipeline ----------------------------------------------------------------

    async def _run(self, lane: Lane) -> None:
        ready: Flush | None = None
        committing: asyncio.Task[bool] | None = None
        try:
            while True:
                if ready is None:
                    if not await self._due(lane, None):
                        return
                    ready = await self._cut(lane)
                    if ready is None:
                        continue
                if ready.error is not None:
                    self._failed(ready, ready.error)
                    self._requeue(ready)
                    ready = None
                    await self._back_off(lane)
                    continue
                # Set before the commit task first runs: the flush cut next is planned
                # against the seqs this one leaves.
                lane.ahead = {**ready.assumed, **(ready.plan.offsets if ready.plan else {})}
                committing = asyncio.ensure_future(self._commit(ready))
                following = None
                if self._config.pipeline and await self._due(lane, committing):
                    following = await self._cut(lane)
                ok = await committing
                committing = None
                if ok:
                    if following is not None and ready.deferred:
                        following = self._hold_back(following, ready.deferred)
                    if ready.only_deferred and following is None:
                        # Nothing but stuck runs waits: do not spin on their locks.
                        await asyncio.sleep(self._config.slow_down_s)
                    ready = following
                    continue
                # Back in front, in seq order: the one built behind first.
                if following is not None:
                    self._requeue(following)
                self._requeue(ready)
                ready = None
                await self._back_off(lane)
        finally:
            if committing is not None:
                committing.cancel()

    async def _due(self, lane: Lane, until: asyncio.Future[bool] | None) -> bool:
        """Wait until a flush of ``lane`` is due (True), or until ``until`` (the commit
        in progress) is done first (False); with no ``until``, False once stopping with
        nothing waiting.

        During a commit the next flush is cut as late as lets its build end with the
        commit (recent commit time minus recent build time): it takes everything that
        arrives meanwhile instead of the first batch, without waiting past the commit.
        """
        cfg = self._config
        while True:
            if until is not None and until.done():
                return False
            lane.wake.clear()
            timeout: float | None = None
            if lane.pending_bytes > 0:
                if self._no_linger or lane.pending_bytes >= cfg.flush_bytes:
                    return True
                if cfg.flush_interval_s > 0:
                    oldest = lane.oldest_pending or time.monotonic()
                    timeout = oldest + cfg.flush_interval_s - time.monotonic()
                if until is not None:
                    cut_at = lane.commit_started + lane.commit_s - 1.5 * lane.build_s
                    late = cut_at - time.perf_counter()
                    timeout = late if timeout is None else max(timeout, late)
                if timeout is None or timeout <= 0:
                    return True
            elif self._stopping and until is None:
                return False
            await self._wait(lane.wake, until, timeout)

    @staticmethod
    async def _wait(event: asyncio.Event, until: asyncio.Future[bool] | None,
                    wait_s: float | None) -> None:
        if until is None and wait_s is None:
            await event.wait()
            return
        waiter: asyncio.Future[Any] = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait([waiter, *([until] if until is not None else [])],
                               timeout=wait_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()

    async def _cut(self, lane: Lane) -> Flush | None:
        """Take what waits in ``lane`` (up to the flush cap) and build its plan."""
        flush = self._take(lane, self._config.max_flush_bytes)
        if flush is None:
            return None
        try:
            flush.plan = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._build, flush, flush.assumed)
        except Exception as exc:  # a bug in chunking: the flush fails and is retried
            flush.error = exc
        flush.built = time.perf_counter()
        lane.build_s = _average(lane.build_s, flush.built - flush.started)
        return flush

    def _build(self, flush: Flush, committed: dict[WriterKey, int],
               deferred: frozenset[WriterKey] = frozenset()) -> CommitPlan:
        """Plan and encode (CPU only: runs in an executor thread or the store's)."""
        plan = plan_commit(committed, flush.taken, [e for e, _ in flush.unseq], deferred)
        self._store.prepare(plan)
        return plan

    def _plan_for(self, flush: Flush, committed: dict[WriterKey, int],
                  deferred: frozenset[WriterKey] = frozenset()) -> CommitPlan:
        """The plan for the seqs locked in the transaction: the one built ahead when
        they are the assumed ones and no writer is deferred, else a new one."""
        if flush.plan is not None and not deferred and all(
            committed.get(w.key, 0) == flush.assumed[w.key] for w in flush.writers
        ):
            return flush.plan
        flush.rebuilt = True
        return self._build(flush, committed, deferred)

    def _take(self, lane: Lane, cap: int) -> Flush | None:
        """Move up to ``cap`` bytes of waiting batches in flight, lowest seqs first
        (unsequenced batches count against the cap too, in arrival order).

        The cap bounds the transient memory of one flush (numpy copies and the COPY
        payload are a few times the points' size). The starting writer rotates so a
        busy writer cannot starve the others when the cap binds.
        """
        taken: dict[WriterKey, list[Entry]] = {}
        unseq: list[tuple[Entry, asyncio.Future[int]]] = []
        writers: list[WriterInfo] = []
        assumed: dict[WriterKey, int] = {}
        size = 0
        states = list(lane.writers.items())
        if states:
            lane.rotation = (lane.rotation + 1) % len(states)
            states = states[lane.rotation:] + states[: lane.rotation]
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
                assumed[key] = max(state.committed, lane.ahead.get(key, 0))
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
        lane.pending_bytes = max(0, lane.pending_bytes - size)
        if not lane.pending_bytes:
            lane.oldest_pending = None  # otherwise the rest is already due: flush again
        if not taken and not unseq:
            return None
        writers.sort(key=lambda w: w.key)
        return Flush(lane, taken, unseq, writers, assumed, size, time.perf_counter(),
                     time.time_ns())

    async def _commit(self, flush: Flush) -> bool:
        lane = flush.lane
        flush.committing = lane.commit_started = time.perf_counter()
        try:
            plan = await self._store.commit(
                flush.writers,
                lambda committed, deferred=frozenset(): self._plan_for(
                    flush, committed, deferred))
        except Exception as exc:
            self._failed(flush, exc)
            return False
        finally:
            lane.ahead = {}
        lane.failures = 0
        now = time.perf_counter()
        lane.commit_s = _average(lane.commit_s, now - flush.committing)
        log.debug("ingest.flushed", lane=lane.index, writers=len(flush.taken),
                  points=plan.chunks.points if plan.chunks else 0, rebuilt=flush.rebuilt,
                  ms=round((now - flush.started) * 1000, 2),
                  build_ms=round((flush.built - flush.started) * 1000, 2),
                  wait_ms=round((flush.committing - flush.built) * 1000, 2),
                  commit_ms=round((now - flush.committing) * 1000, 2))
        if plan.deferred:
            # Their run is held by another transaction (a stuck peer): back in front,
            # for the next flush; the rest of this one is done.
            later = {k: flush.taken.pop(k) for k in plan.deferred if k in flush.taken}
            self._requeue_entries(lane, later, [])
            flush.deferred = frozenset(plan.deferred)
            flush.only_deferred = not flush.taken and not flush.unseq
        self._host.complete(plan, flush.taken, flush.unseq)
        self._report(flush, plan)
        return True

    def _hold_back(self, following: Flush, deferred: frozenset[WriterKey]) -> Flush | None:
        """The flush cut behind one that deferred ``deferred`` took their later seqs,
        planned as if the deferred ones committed: those go back too (after the ones just
        put back, by seq), or the next flush would find a gap and abort their streams.
        None when nothing else is left in it."""
        later = {k: following.taken.pop(k) for k in deferred if k in following.taken}
        if not later:
            return following
        self._requeue_entries(following.lane, later, [])
        following.writers = [w for w in following.writers if w.key not in later]
        following.assumed = {k: v for k, v in following.assumed.items() if k not in later}
        following.plan = None  # planned for seqs it no longer holds: built in the commit
        if not following.taken and not following.unseq:
            return None
        return following

    def _failed(self, flush: Flush, exc: Exception) -> None:
        flush.lane.failures += 1
        retryable = isinstance(exc, TrackerError) and exc.code is Code.UNAVAILABLE
        log.warning("ingest.flush_failed", error=repr(exc), retryable=retryable,
                    failures=flush.lane.failures, lane=flush.lane.index)
        self._host.flush_failed(list(flush.taken))
        self._report(flush, None)

    async def _back_off(self, lane: Lane) -> None:
        delay = min(self._config.retry_max_s, 0.05 * 2 ** min(lane.failures, 10))
        await asyncio.sleep(delay * (0.5 + random.random() / 2))

    def _requeue(self, flush: Flush) -> None:
        self._requeue_entries(flush.lane, flush.taken, flush.unseq)

    def _requeue_entries(self, lane: Lane, taken: dict[WriterKey, list[Entry]],
                         unseq: list[tuple[Entry, asyncio.Future[int]]]) -> None:
        for key, entries in taken.items():
            state = self._host.writer(key)
            for entry in entries:
                state.inflight.pop(entry.batch.seq, None)
                state.pending.setdefault(entry.batch.seq, entry)
                lane.pending_bytes += entry.batch.nbytes
        for entry, fut in reversed(unseq):  # back in front, in their order
            state = self._host.writer(entry.info.key)
            state.unsequenced.insert(0, (entry, fut))
            state.unsequenced_inflight -= 1
            lane.pending_bytes += entry.batch.nbytes
        if lane.oldest_pending is None:
            lane.oldest_pending = time.monotonic()

    def _report(self, flush: Flush, plan: CommitPlan | None) -> None:
        chunks = plan.chunks if plan is not None else None
        self._host.observe(FlushReport(
            points=chunks.points if chunks else 0,
            rows=chunks.rows if chunks else 0,
            batches=sum(len(es) for es in flush.taken.values()) + len(flush.unseq),
            nbytes=flush.nbytes,
            started_ns=flush.started_ns,
            duration_s=time.perf_counter() - flush.started,
            ok=plan is not None,
            lane=flush.lane.index,
            rebuilt=flush.rebuilt,
        ))
