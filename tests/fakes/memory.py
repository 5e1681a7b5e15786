"""The in-memory "database" the fakes share (as procrastinate's InMemoryConnector keeps
its jobs in dicts): experiments, runs with params and tags, metric keys, chunks and
summaries, API keys.

Each fake implements one port over this state, so a test wires the fakes the way
``server.py`` wires the PostgreSQL stores and seeds data through :meth:`add_points` and
friends. Times come from a deterministic clock that advances a millisecond per write,
so "newest first" orders are predictable.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np

from tracker_server.domain.access import Role
from tracker_server.domain.artifacts import Artifact
from tracker_server.domain.errors import check_all_found
from tracker_server.domain.runs import Experiment, Run
from tracker_server.domain.summaries import MetricSummary

EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass
class StoredChunk:
    """One flushed (run, key, rank, attempt) buffer."""

    run_id: uuid.UUID
    key_id: int
    rank: int
    attempt: int
    chunk_id: int
    steps: np.ndarray
    values: np.ndarray
    wall_ns: np.ndarray

    @property
    def first_step(self) -> int:
        """Smallest step of the chunk."""
        return int(self.steps.min())

    @property
    def last_step(self) -> int:
        """Largest step of the chunk."""
        return int(self.steps.max())


@dataclass
class StoredKey:
    """An API key row."""

    name: str
    role: Role
    secret_hash: bytes
    revoked: bool = False
    lookups: int = 0


@dataclass
class InMemoryDatabase:
    """Rows by table; :meth:`reset` empties everything."""

    experiments: dict[uuid.UUID, Experiment] = field(default_factory=dict)
    runs: dict[uuid.UUID, Run] = field(default_factory=dict)
    """Runs without params and tags (see :meth:`run`)."""
    params: dict[uuid.UUID, dict[str, str]] = field(default_factory=dict)
    tags: dict[uuid.UUID, dict[str, str]] = field(default_factory=dict)
    resume_tokens: dict[uuid.UUID, str] = field(default_factory=dict)
    metric_keys: dict[str, int] = field(default_factory=dict)
    chunks: list[StoredChunk] = field(default_factory=list)
    summaries: dict[tuple[uuid.UUID, str], MetricSummary] = field(default_factory=dict)
    user_summary: dict[uuid.UUID, dict[str, float]] = field(default_factory=dict)
    metric_goals: dict[uuid.UUID, dict[str, str]] = field(default_factory=dict)
    api_keys: dict[str, StoredKey] = field(default_factory=dict)
    artifacts: dict[uuid.UUID, dict[tuple[int, str], Artifact]] = field(default_factory=dict)
    """Artifact records per run by (step key, uri), the primary key's order."""
    ticks: int = 0

    def reset(self) -> None:
        """Forget every row (test independence when a database is shared)."""
        fresh = InMemoryDatabase()
        self.__dict__.update(fresh.__dict__)

    def now(self) -> datetime:
        """The clock: one millisecond later on every call."""
        self.ticks += 1
        return EPOCH + timedelta(milliseconds=self.ticks)

    def run(self, run_id: uuid.UUID) -> Run:
        """A run with its params, tags, user summary and goals (the caller checked it
        exists)."""
        return replace(self.runs[run_id], params=dict(self.params[run_id]),
                       tags=dict(self.tags[run_id]),
                       summary=dict(self.user_summary.get(run_id, {})),
                       metric_goals=dict(self.metric_goals.get(run_id, {})))

    def require_runs(self, run_ids: list[uuid.UUID]) -> None:
        """NOT_FOUND naming the first unknown run."""
        check_all_found(run_ids, self.runs, "run")

    def require_experiments(self, experiment_ids: list[uuid.UUID]) -> None:
        """NOT_FOUND naming the first unknown experiment."""
        check_all_found(experiment_ids, self.experiments, "experiment")

    def key_id(self, name: str) -> int:
        """The id of a metric name, created on first use."""
        return self.metric_keys.setdefault(name, len(self.metric_keys) + 1)

    def add_points(
        self,
        run_id: uuid.UUID,
        key: str,
        steps: list[int] | np.ndarray,
        values: list[float] | np.ndarray,
        *,
        rank: int = 0,
        attempt: int = 0,
    ) -> None:
        """Store one chunk and fold it into the (run, key) summary the way the flush
        transaction does: min/max ignore NaN (ties keep the earlier point), "last" is
        the point with the highest (attempt, step), a tie going to the later write."""
        self.require_runs([run_id])
        s = np.asarray(steps, dtype=np.int64)
        v = np.asarray(values, dtype=np.float64)
        wall = np.arange(s.shape[0], dtype=np.int64) + self.ticks * 1_000_000
        self.ticks += 1
        self.chunks.append(StoredChunk(run_id, self.key_id(key), rank, attempt,
                                       len(self.chunks) + 1, s, v, wall))
        summary = self.summaries.get((run_id, key))
        for step, value, wall_ns in zip(s.tolist(), v.tolist(), wall.tolist(), strict=True):
            summary = _fold(summary, key, attempt, step, value, wall_ns)
        assert summary is not None
        self.summaries[(run_id, key)] = summary


def _fold(s: MetricSummary | None, key: str, attempt: int, step: int, value: float,
          wall_ns: int) -> MetricSummary:
    if s is None:
        has = not math.isnan(value)
        return MetricSummary(key, 1, step, step, value, wall_ns, attempt,
                             value if has else None, step if has else None,
                             value if has else None, step if has else None)
    later = (attempt, step) >= (s.last_attempt, s.last_step)
    lo, lo_step, hi, hi_step = s.min_value, s.min_step, s.max_value, s.max_step
    if not math.isnan(value):
        if lo is None or value < lo:
            lo, lo_step = value, step
        if hi is None or value > hi:
            hi, hi_step = value, step
    return MetricSummary(
        key=key,
        count=s.count + 1,
        first_step=min(s.first_step, step),
        last_step=step if later else s.last_step,
        last_value=value if later else s.last_value,
        last_wall_ns=wall_ns if later else s.last_wall_ns,
        last_attempt=max(s.last_attempt, attempt),
        min_value=lo, min_step=lo_step, max_value=hi, max_step=hi_step,
    )
