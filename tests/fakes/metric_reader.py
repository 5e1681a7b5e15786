"""``MetricReader`` and ``SeriesReader`` in memory. Chunks here have no sketches, so a
downsampled read always gets raw chunks (the sketch path has its own unit tests in
tests/test_sketch.py)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable

import numpy as np

from tests.fakes.memory import InMemoryDatabase, StoredChunk
from tests.fakes.run_filter_eval import Evaluator
from tracker_server.domain.run_filter import Node
from tracker_server.domain.series import AttemptInfo, Chunks
from tracker_server.domain.sketch_plan import ChunkMeta, ChunkRead
from tracker_server.domain.summaries import KeyInfo, MetricSummary, RankedRun

_BEST = {"last": ("last_value", "last_step"), "min": ("min_value", "min_step"),
         "max": ("max_value", "max_step")}


def _as_chunks(rows: list[StoredChunk], stored: bool = False) -> Chunks:
    if not rows:
        return Chunks.empty()
    rows = sorted(rows, key=lambda c: (c.rank, c.attempt, c.chunk_id))
    return Chunks(
        ranks=np.array([c.rank for c in rows], dtype=np.int64),
        attempts=np.array([c.attempt for c in rows], dtype=np.int64),
        chunk_ids=np.array([c.chunk_id for c in rows], dtype=np.int64),
        sizes=np.array([c.steps.shape[0] for c in rows], dtype=np.int64),
        steps=np.concatenate([c.steps for c in rows]),
        values=np.concatenate([c.values for c in rows]),
        wall_ns=np.concatenate([c.wall_ns for c in rows]),
        stored_n=np.array([c.steps.shape[0] for c in rows], dtype=np.int64) if stored else None,
    )


class FakeMetricReader:
    """Keys, summaries, rankings and chunks of an :class:`InMemoryDatabase`."""

    def __init__(self, db: InMemoryDatabase) -> None:
        self.db = db
        self._eval = Evaluator(db)

    def _of(self, run_id: uuid.UUID, key_id: int) -> list[StoredChunk]:
        return [c for c in self.db.chunks if c.run_id == run_id and c.key_id == key_id]

    def _in_range(self, run_id: uuid.UUID, key_id: int, start: int, end: int,
                  rank: int | None) -> list[StoredChunk]:
        return [c for c in self._of(run_id, key_id)
                if c.first_step <= end and c.last_step >= start
                and (rank is None or c.rank == rank)]

    async def list_keys(self, run_id: uuid.UUID) -> list[KeyInfo]:
        """See ``MetricReader.list_keys``."""
        self.db.require_runs([run_id])
        out = []
        for (rid, key), summary in sorted(self.db.summaries.items(), key=lambda kv: kv[0][1]):
            if rid == run_id:
                ranks = sorted({c.rank for c in self._of(run_id, self.db.metric_keys[key])})
                out.append(KeyInfo(summary, ranks))
        return out

    async def key_ids(self, names: list[str]) -> dict[str, int]:
        """See ``MetricReader.key_ids``."""
        return {n: self.db.metric_keys[n] for n in names if n in self.db.metric_keys}

    async def latest(
        self, run_ids: list[uuid.UUID], keys: list[str]
    ) -> dict[uuid.UUID, list[MetricSummary]]:
        """See ``MetricReader.latest``."""
        self.db.require_runs(run_ids)
        out: dict[uuid.UUID, list[MetricSummary]] = {r: [] for r in run_ids}
        for (rid, key), summary in sorted(self.db.summaries.items(), key=lambda kv: kv[0][1]):
            if rid in out and (not keys or key in keys):
                out[rid].append(summary)
        return out

    async def best_runs(
        self,
        experiment_ids: list[uuid.UUID],
        key: str,
        maximize: bool,
        on: str,
        limit: int,
        where: Node | None,
    ) -> list[RankedRun]:
        """See ``MetricReader.best_runs``."""
        self.db.require_experiments(experiment_ids)
        value_attr, step_attr = _BEST[on]
        ranked = []
        for run_id in self.db.runs:
            run = self.db.run(run_id)
            summary = self.db.summaries.get((run_id, key))
            if run.experiment_id not in experiment_ids or summary is None:
                continue
            value = getattr(summary, value_attr)
            if value is None or math.isnan(value) or not self._eval.matches(where, run):
                continue
            ranked.append(RankedRun(run_id, run.name, int(run.status), run.experiment_id,
                                    value, getattr(summary, step_attr), summary))
        ranked.sort(key=lambda r: (-r.value if maximize else r.value, r.run_id))
        return ranked[:limit]

    async def attempts(self, run_id: uuid.UUID, key_id: int) -> list[AttemptInfo]:
        """See ``SeriesReader.attempts``."""
        groups: dict[tuple[int, int], list[StoredChunk]] = {}
        for c in self._of(run_id, key_id):
            groups.setdefault((c.rank, c.attempt), []).append(c)
        return [
            AttemptInfo(rank, attempt, min(c.first_step for c in cs), len(cs),
                        max(c.chunk_id for c in cs), sum(c.steps.shape[0] for c in cs))
            for (rank, attempt), cs in sorted(groups.items())
        ]

    async def chunks(
        self, run_id: uuid.UUID, key_id: int, start_step: int, end_step: int, rank: int | None
    ) -> Chunks:
        """See ``SeriesReader.chunks``."""
        return _as_chunks(self._in_range(run_id, key_id, start_step, end_step, rank))

    async def chunk_bounds(
        self, run_id: uuid.UUID, key_id: int, start_step: int, end_step: int, rank: int | None
    ) -> list[tuple[int, int]]:
        """See ``SeriesReader.chunk_bounds``."""
        return sorted((c.first_step, c.steps.shape[0])
                      for c in self._in_range(run_id, key_id, start_step, end_step, rank))

    async def planned_chunks(
        self,
        run_id: uuid.UUID,
        key_id: int,
        start_step: int,
        end_step: int,
        rank: int | None,
        planner: Callable[[list[AttemptInfo], list[ChunkMeta]], list[ChunkRead] | None],
    ) -> tuple[list[AttemptInfo], Chunks] | None:
        """See ``SeriesReader.planned_chunks`` (no chunk offers a sketch)."""
        infos = await self.attempts(run_id, key_id)
        live = self._in_range(run_id, key_id, start_step, end_step, rank)
        metas = [ChunkMeta(c.rank, c.attempt, c.chunk_id, c.first_step, c.last_step,
                           c.steps.shape[0], False) for c in live]
        plan = planner(infos, metas)
        if plan is None:
            return None
        chosen = {r.chunk_id for r in plan}
        return infos, _as_chunks([c for c in live if c.chunk_id in chosen], stored=True)
