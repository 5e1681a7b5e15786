"""An in-memory ``MetricStore`` (``domain.ingest``): the ingest engine's storage port.

It keeps the guarantees of ``storage.metric_store.PgMetricStore``, so what the engine's
unit tests prove against it holds against PostgreSQL:

- one committed seq per (run, writer), changed only inside ``commit``, under that
  writer's lock held for the whole transaction (``SELECT ... FOR UPDATE``); locks are
  taken in key order, so concurrent commits (server replicas) cannot deadlock;
- ``plan`` is called with the committed seqs read under those locks (the
  compare-and-set that fences stale buffers);
- a commit is a transaction: its chunks, summaries and offsets appear together when it
  returns, and a commit that fails leaves nothing behind.

Several engines may share one store, or each use a :meth:`FakeMetricStore.replica`
(server replicas, each with its own store object, on one database: same data, locks and
injected failures, separate commit logs). ``latency_s`` is awaited where the real store
awaits the database, so other tasks interleave there (``round_trip_yields`` stretches
those waits over more event-loop turns without real time); failures are injected per commit
with :meth:`FakeMetricStore.inject`. Committed chunks are kept, so tests can check
exactly which points were stored (:meth:`FakeMetricStore.points`).

:class:`RecordingSubscriber` fakes the engine's other port (a stream);
:func:`stream_send` and :func:`log_metrics` drive the engine the way the gRPC servicer
does; :func:`tagged_batch` builds batches whose points name themselves, so a stored point
tells which batch it came from. :data:`INLINE` is the executor unit tests give the
engine, so flush builds run on the loop instead of a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field

import numpy as np

from tracker_server.domain.chunking import ChunkSet, SummarySet
from tracker_server.domain.errors import TrackerError, failed_precondition, not_found, unavailable
from tracker_server.domain.ingest import CommitPlan, IngestEngine, Planner
from tracker_server.domain.points import PointBatch, WriterInfo, WriterKey, empty_batch


class InlineExecutor(Executor):
    """Runs each job at once, in the calling thread: the engine's flush builds happen
    on the event loop, so a test's schedule does not depend on thread timing."""

    def submit(self, fn: Callable[..., object], /, *args: object, **kwargs: object
               ) -> Future[object]:
        """Run ``fn`` now; its result (or exception) in a finished future."""
        fut: Future[object] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the awaiting engine, as a thread would
            fut.set_exception(exc)
        return fut


INLINE = InlineExecutor()


class Stage(enum.Enum):
    """Where in a commit an injected failure strikes."""

    BEFORE_PLAN = "before_plan"
    """After the locks, before ``plan`` is asked (a dropped connection, a lock timeout)."""
    AFTER_WRITE = "after_write"
    """After the plan's rows are written, before COMMIT: the transaction rolls back."""
    REPLY_LOST = "reply_lost"
    """After COMMIT: the data is durable but the caller sees an error."""


@dataclass(frozen=True)
class Failure:
    """One injected commit failure."""

    stage: Stage = Stage.BEFORE_PLAN
    error: Exception | None = None
    """What ``commit`` raises; None means a retryable UNAVAILABLE."""

    def exception(self) -> Exception:
        """The exception to raise."""
        return self.error if self.error is not None else unavailable("injected failure")


@dataclass(frozen=True)
class CommitRecord:
    """One call of ``commit``, as the store saw it."""

    index: int
    writers: tuple[WriterKey, ...]
    committed_before: dict[WriterKey, int]
    """Committed seqs read under the locks (empty if it failed before reading them)."""
    plan: CommitPlan | None
    """What ``plan`` returned (None if it was not asked or raised)."""
    durable: bool
    """Its writes are committed."""
    error: BaseException | None
    """What ``commit`` raised, if anything."""


@dataclass(frozen=True)
class StoredPoint:
    """One committed point, with the chunk row it belongs to."""

    run_id: uuid.UUID
    key_id: int
    rank: int
    attempt: int
    step: int
    value: float
    wall_ns: int


@dataclass
class _Database:
    """What replicas share: the tables, the row locks, the failure schedule."""

    offsets: dict[WriterKey, int] = field(default_factory=dict)
    chunks: list[ChunkSet] = field(default_factory=list)
    summaries: list[SummarySet] = field(default_factory=list)
    key_ids: dict[str, int] = field(default_factory=dict)
    runs: dict[uuid.UUID, int] | None = None
    commits: list[CommitRecord] = field(default_factory=list)
    failures: deque[Failure] = field(default_factory=deque)
    locks: dict[WriterKey, asyncio.Lock] = field(default_factory=dict)


class FakeMetricStore:
    """Implements ``domain.ingest.MetricStore`` in memory."""

    def __init__(
        self, *, latency_s: float = 0.0, round_trip_yields: int = 1, _db: _Database | None = None
    ) -> None:
        self.latency_s = latency_s
        self.round_trip_yields = round_trip_yields
        self._db = _db if _db is not None else _Database()
        self.commits: list[CommitRecord] = []
        """This store object's calls of ``commit`` (failed ones too), in the order they
        ended; ``all_commits`` has those of every replica."""
        self.hold: asyncio.Event | None = None
        """When set, each commit waits for this event after its plan (a slow COPY)."""
        self.in_commit = 0
        """Commits of this store object under way now; ``max_in_commit`` the most seen."""
        self.max_in_commit = 0
        self.prepared = 0
        """Plans handed to ``prepare`` (built ahead of, or rebuilt in, a commit)."""
        self.prepared_during_commit = 0
        """Of those, the ones prepared while a commit of this store object ran."""
        self.busy_runs: set[uuid.UUID] = set()
        """Runs another transaction holds (a frozen peer): a commit defers their writers,
        as ``PgMetricStore`` does when its run lock wait runs out."""
        self.on_commit: Callable[[CommitRecord], None] | None = None
        """Called as the last step of each of this object's commits, before it returns
        or raises (no other task runs in between)."""

    def replica(self) -> FakeMetricStore:
        """Another store object on the same data (a second server replica)."""
        return FakeMetricStore(
            latency_s=self.latency_s, round_trip_yields=self.round_trip_yields, _db=self._db
        )

    @property
    def offsets(self) -> dict[WriterKey, int]:
        """Committed seq per writer (what ``writer_offsets`` holds)."""
        return self._db.offsets

    @property
    def chunks(self) -> list[ChunkSet]:
        """Chunk sets of the durable commits, in commit order."""
        return self._db.chunks

    @property
    def summaries(self) -> list[SummarySet]:
        """Summary deltas of the durable commits, in commit order."""
        return self._db.summaries

    @property
    def key_ids(self) -> dict[str, int]:
        """Metric name to key id."""
        return self._db.key_ids

    @property
    def runs(self) -> dict[uuid.UUID, int] | None:
        """Current attempt per known run; None accepts any run (see ``add_run``)."""
        return self._db.runs

    @property
    def all_commits(self) -> list[CommitRecord]:
        """The commits of every replica, in the order they ended."""
        return self._db.commits

    # -- test controls ---------------------------------------------------------------

    def inject(self, *failures: Failure) -> None:
        """Make the next commits (of any replica) fail, one failure per commit, in order."""
        self._db.failures.extend(failures)

    def clear_failures(self) -> None:
        """Forget failures not yet used."""
        self._db.failures.clear()

    @property
    def pending_failures(self) -> int:
        """Injected failures not yet used."""
        return len(self._db.failures)

    def add_run(self, run_id: uuid.UUID, attempt: int = 0) -> None:
        """Register a run; from then on ``open_writer`` refuses unknown runs."""
        if self._db.runs is None:
            self._db.runs = {}
        self._db.runs[run_id] = attempt

    def committed_seq(self, key: WriterKey) -> int:
        """The writer's durable committed seq."""
        return self.offsets.get(key, 0)

    def points(self) -> list[StoredPoint]:
        """Every durable point, in commit order."""
        out: list[StoredPoint] = []
        for c in self.chunks:
            for r in range(c.rows):
                start, n = int(c.starts[r]), int(c.n[r])
                for i in range(start, start + n):
                    out.append(StoredPoint(
                        c.run_ids[r], int(c.key_ids[r]), int(c.ranks[r]), int(c.attempts[r]),
                        int(c.steps[i]), float(c.values[i]), int(c.wall_ns[i]),
                    ))
        return out

    async def _round_trip(self) -> None:
        """One wait for the database."""
        await asyncio.sleep(self.latency_s)
        for _ in range(self.round_trip_yields - 1):
            await asyncio.sleep(0)

    # -- MetricStore -----------------------------------------------------------------

    async def open_writer(self, info: WriterInfo) -> int:
        """Check the run and attempt (when runs are registered); the committed seq."""
        await self._round_trip()
        if self.runs is not None:
            current = self.runs.get(info.key.run_id)
            if current is None:
                raise not_found(f"run {info.key.run_id} not found")
            if info.attempt > current:
                raise failed_precondition(
                    f"attempt {info.attempt} is newer than the run's attempt {current}"
                )
        return self.offsets.get(info.key, 0)

    async def resolve_keys(self, names: list[str]) -> list[int]:
        """Key ids, creating missing ones (ids start at 1, in order of first sight)."""
        if any(n not in self.key_ids for n in names):
            await self._round_trip()
        return [self.key_ids.setdefault(n, len(self.key_ids) + 1) for n in names]

    def prepare(self, plan: CommitPlan) -> None:
        """Encoding is the real store's business: nothing to prepare in memory."""
        self.prepared += 1
        if self.in_commit:
            self.prepared_during_commit += 1

    async def commit(
        self,
        writers: list[WriterInfo],
        plan: Planner,
    ) -> CommitPlan:
        """One transaction: lock, plan, write, commit (or fail as injected)."""
        deferred = frozenset(w.key for w in writers if w.key.run_id in self.busy_runs)
        keys = tuple(sorted({w.key for w in writers} - deferred))
        db = self._db
        failure = db.failures.popleft() if db.failures else None
        committed: dict[WriterKey, int] = {}
        result: CommitPlan | None = None
        durable = False
        self.in_commit += 1
        self.max_in_commit = max(self.max_in_commit, self.in_commit)
        try:
            async with contextlib.AsyncExitStack() as locks:
                await self._round_trip()  # pool checkout, offset rows
                for key in keys:
                    await locks.enter_async_context(db.locks.setdefault(key, asyncio.Lock()))
                committed = {k: db.offsets.get(k, 0) for k in keys}
                await self._round_trip()  # SELECT ... FOR UPDATE
                if failure is not None and failure.stage is Stage.BEFORE_PLAN:
                    raise failure.exception()
                result = plan(dict(committed), deferred)
                if self.hold is not None:
                    await self.hold.wait()
                await self._round_trip()  # COPY, summary upsert, COMMIT
                if failure is not None and failure.stage is Stage.AFTER_WRITE:
                    raise failure.exception()
                self._apply(result)
                durable = True
                if failure is not None:
                    raise failure.exception()
        except BaseException as exc:
            self.in_commit -= 1
            self._record(keys, committed, result, durable, exc)
            raise
        self.in_commit -= 1
        self._record(keys, committed, result, durable, None)
        return result

    def _apply(self, result: CommitPlan) -> None:
        """COMMIT: everything of one transaction becomes visible at once."""
        if result.chunks is not None and result.chunks.rows:
            self.chunks.append(result.chunks)
        if result.summaries is not None:
            self.summaries.append(result.summaries)
        self.offsets.update(result.offsets)

    def _record(
        self,
        keys: tuple[WriterKey, ...],
        committed: dict[WriterKey, int],
        result: CommitPlan | None,
        durable: bool,
        error: BaseException | None,
    ) -> None:
        record = CommitRecord(len(self._db.commits), keys, committed, result, durable, error)
        self._db.commits.append(record)
        self.commits.append(record)
        if self.on_commit is not None:
            self.on_commit(record)


class RecordingSubscriber:
    """A ``domain.ingest.Subscriber`` (one stream) that records what it is told.

    Each ack is noted with the writer's durable seq in ``store`` at that moment, so a
    test can check that no ack runs ahead of a commit (:meth:`problems`).
    """

    def __init__(self, store: FakeMetricStore, key: WriterKey) -> None:
        self.store = store
        self.key = key
        self.acks: list[int] = []
        self.durable_at_ack: list[int] = []
        self.aborts: list[TrackerError] = []
        self.slow_downs: list[float] = []
        self.drained = 0
        """Times the engine told the stream to stop reading (shutdown)."""

    def on_ack(self, committed_seq: int) -> None:
        """Record the ack and what was durable when it came."""
        self.acks.append(committed_seq)
        self.durable_at_ack.append(self.store.committed_seq(self.key))

    def on_abort(self, error: TrackerError) -> None:
        """Record the error the stream would end with."""
        self.aborts.append(error)

    def on_slow_down(self, retry_after_s: float) -> None:
        """Record the SlowDown."""
        self.slow_downs.append(retry_after_s)

    def on_drain(self) -> None:
        """Record that the stream was told to stop reading."""
        self.drained += 1

    def problems(self) -> list[str]:
        """Acks that went backwards or ran ahead of the durable seq."""
        out = [f"ack {b} after {a}" for a, b in zip(self.acks, self.acks[1:], strict=False)
               if b < a]
        out += [f"ack {a} while only {d} was durable"
                for a, d in zip(self.acks, self.durable_at_ack, strict=True) if a > d]
        return out


KEYS = ("a", "b", "c")


def tagged_batch(seq: int, ids: list[int], table_ids: list[int] | None = None) -> PointBatch:
    """A batch whose i-th point has step, value and wall time ``ids[i]`` (unique tags).

    Points cycle over the keys ``a``, ``b``, ``c``. ``table_ids`` gives the key ids as
    the store would resolve them; without it the engine's ``resolve_keys`` fills them.
    No ids give the empty batch that stands in for a rejected one.
    """
    if not ids:
        return empty_batch(seq)
    tags = np.asarray(ids, dtype=np.int64)
    batch = PointBatch(
        seq, list(KEYS), (tags % len(KEYS)).astype(np.uint32), tags.copy(),
        tags.astype(np.float64), tags.copy(),
    )
    if table_ids is not None:
        batch.table_ids = np.asarray(table_ids, dtype=np.int32)
    return batch


async def stream_send(engine: IngestEngine, info: WriterInfo, batch: PointBatch) -> bool:
    """What a stream's reader does with one batch (``transport.ingest_servicer``): drop a
    replay of a committed seq, else resolve keys and submit; then stop reading while the
    server is over budget. True if the engine buffered the batch."""
    fresh = False
    if batch.seq > engine.committed_seq(info.key):
        await engine.resolve_keys(batch)
        fresh = engine.submit(info, batch)
    if engine.over_budget():
        await engine.wait_for_budget()
    return fresh


async def log_metrics(engine: IngestEngine, info: WriterInfo, batch: PointBatch) -> int:
    """What the unary LogMetrics call does: the committed seq it answers with."""
    await engine.open(info)
    try:
        if batch.seq and batch.seq <= engine.committed_seq(info.key):
            return engine.committed_seq(info.key)
        await engine.resolve_keys(batch)
        await engine.wait_for_budget()
        if batch.seq == 0:
            return await engine.submit_unsequenced(info, batch)
        engine.submit(info, batch)
        return await engine.wait_committed(info.key, batch.seq)
    finally:
        engine.release(info.key)
