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

Several engines may share one store (replicas on one database). ``latency_s`` is awaited
where the real store awaits the database, so other tasks interleave there; failures
are injected per commit with :meth:`FakeMetricStore.inject`. Committed chunks are kept,
so tests can check exactly which points were stored (:meth:`FakeMetricStore.points`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tracker_server.domain.chunking import ChunkSet, SummarySet
from tracker_server.domain.errors import failed_precondition, not_found, unavailable
from tracker_server.domain.ingest import CommitPlan
from tracker_server.domain.points import WriterInfo, WriterKey


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


class FakeMetricStore:
    """Implements ``domain.ingest.MetricStore`` in memory."""

    def __init__(self, *, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.offsets: dict[WriterKey, int] = {}
        """Committed seq per writer (what ``writer_offsets`` holds)."""
        self.chunks: list[ChunkSet] = []
        """Chunk sets of the durable commits, in commit order."""
        self.summaries: list[SummarySet] = []
        self.commits: list[CommitRecord] = []
        """Every call of ``commit``, failed ones included, in the order they ended."""
        self.key_ids: dict[str, int] = {}
        self.runs: dict[uuid.UUID, int] | None = None
        """Current attempt per known run; None accepts any run (see ``add_run``)."""
        self.on_commit: Callable[[CommitRecord], None] | None = None
        """Called as the last step of every commit, before it returns or raises."""
        self._failures: deque[Failure] = deque()
        self._locks: dict[WriterKey, asyncio.Lock] = {}

    # -- test controls ---------------------------------------------------------------

    def inject(self, *failures: Failure) -> None:
        """Make the next commits fail, one failure per commit, in order."""
        self._failures.extend(failures)

    def clear_failures(self) -> None:
        """Forget failures not yet used."""
        self._failures.clear()

    @property
    def pending_failures(self) -> int:
        """Injected failures not yet used."""
        return len(self._failures)

    def add_run(self, run_id: uuid.UUID, attempt: int = 0) -> None:
        """Register a run; from then on ``open_writer`` refuses unknown runs."""
        if self.runs is None:
            self.runs = {}
        self.runs[run_id] = attempt

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

    # -- MetricStore -----------------------------------------------------------------

    async def open_writer(self, info: WriterInfo) -> int:
        """Check the run and attempt (when runs are registered); the committed seq."""
        await asyncio.sleep(self.latency_s)
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
            await asyncio.sleep(self.latency_s)
        return [self.key_ids.setdefault(n, len(self.key_ids) + 1) for n in names]

    async def commit(
        self,
        writers: list[WriterInfo],
        plan: Callable[[dict[WriterKey, int]], CommitPlan],
    ) -> CommitPlan:
        """One transaction: lock, plan, write, commit (or fail as injected)."""
        keys = tuple(sorted({w.key for w in writers}))
        failure = self._failures.popleft() if self._failures else None
        committed: dict[WriterKey, int] = {}
        result: CommitPlan | None = None
        durable = False
        try:
            async with contextlib.AsyncExitStack() as locks:
                await asyncio.sleep(self.latency_s)  # pool checkout, offset rows
                for key in keys:
                    await locks.enter_async_context(self._locks.setdefault(key, asyncio.Lock()))
                committed = {k: self.offsets.get(k, 0) for k in keys}
                await asyncio.sleep(self.latency_s)  # SELECT ... FOR UPDATE
                if failure is not None and failure.stage is Stage.BEFORE_PLAN:
                    raise failure.exception()
                result = plan(dict(committed))
                await asyncio.sleep(self.latency_s)  # COPY, summary upsert, COMMIT
                if failure is not None and failure.stage is Stage.AFTER_WRITE:
                    raise failure.exception()
                self._apply(result)
                durable = True
                if failure is not None:
                    raise failure.exception()
        except BaseException as exc:
            self._record(keys, committed, result, durable, exc)
            raise
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
        record = CommitRecord(len(self.commits), keys, committed, result, durable, error)
        self.commits.append(record)
        if self.on_commit is not None:
            self.on_commit(record)
