"""Ports: what the domain needs from storage, one Protocol per store.

PostgreSQL implements them in ``tracker_server.storage`` (only ``server.py`` names
those classes); in-memory fakes in ``tests/fakes`` implement them for unit tests. The
ingest engine's port, ``MetricStore``, lives beside the engine in ``domain.ingest``.

Stores raise ``TrackerError``: NOT_FOUND naming the first unknown id, ALREADY_EXISTS,
FAILED_PRECONDITION for a refused status change, UNAVAILABLE/ABORTED for database
trouble, and ``paging.PositionError`` for a page position they cannot use.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from tracker_server.domain.api_keys import KeyRecord
from tracker_server.domain.artifacts import (
    Artifact,
    ArtifactFilter,
    NewArtifact,
    Verification,
)
from tracker_server.domain.paging import KeysetPage
from tracker_server.domain.run_filter import Node, OrderKey
from tracker_server.domain.runs import Experiment, ExperimentStatus, NewRun, Run, RunStatus
from tracker_server.domain.series import AttemptInfo, Chunks
from tracker_server.domain.sketch_plan import ChunkMeta, ChunkRead
from tracker_server.domain.summaries import KeyInfo, MetricSummary, RankedRun


class ExperimentStore(Protocol):
    """Experiments."""

    async def create_experiment(
        self, name: str, owner: str, description: str, get_if_exists: bool
    ) -> tuple[Experiment, bool]:
        """Create; ALREADY_EXISTS when (owner, name) is taken, unless ``get_if_exists``,
        which returns the existing one. Returns (experiment, created)."""
        ...

    async def get_experiment(self, experiment_id: uuid.UUID) -> Experiment:
        """One experiment; NOT_FOUND when unknown."""
        ...

    async def list_experiments(
        self,
        owner: str | None,
        statuses: list[ExperimentStatus],
        name_prefix: str | None,
        created_after: datetime | None,
        created_before: datetime | None,
        limit: int,
        after: list[Any] | None,
    ) -> KeysetPage[Experiment]:
        """Newest first (created_at, then experiment_id, descending); ``after`` is the
        previous page's last (created_at, experiment_id)."""
        ...

    async def update_experiment(
        self, experiment_id: uuid.UUID, status: ExperimentStatus | None, description: str | None
    ) -> Experiment:
        """Set status and/or description (None keeps it); NOT_FOUND when unknown."""
        ...


class RunStore(Protocol):
    """Runs with their params and tags."""

    async def create_run(self, new: NewRun) -> tuple[Run, bool]:
        """Create a run (activating its experiment), or return the existing one with
        the same run key (a new attempt when ``new.resume``); NOT_FOUND for an unknown
        experiment, ALREADY_EXISTS when a param clashes. Returns (run, created)."""
        ...

    async def get_run(self, run_id: uuid.UUID) -> Run:
        """One run; NOT_FOUND when unknown."""
        ...

    async def get_runs(self, run_ids: list[uuid.UUID]) -> list[Run]:
        """Runs in the order of ``run_ids``; NOT_FOUND naming the first unknown one."""
        ...

    async def require_runs(self, run_ids: list[uuid.UUID]) -> None:
        """NOT_FOUND naming the first of ``run_ids`` that does not exist."""
        ...

    async def finish_run(
        self, run_id: uuid.UUID, status: RunStatus, ended_at: datetime | None
    ) -> Run:
        """running -> ``status`` with ``ended_at`` (None: now), serialised per run;
        repeating the current terminal status is a no-op (``runs.check_transition``)."""
        ...

    async def log_params(self, run_id: uuid.UUID, params: dict[str, str]) -> None:
        """Add params atomically: all, or none when one clashes (ALREADY_EXISTS)."""
        ...

    async def set_tags(
        self, run_id: uuid.UUID, tags: dict[str, str], delete_keys: list[str]
    ) -> dict[str, str]:
        """Delete ``delete_keys``, then upsert ``tags``; returns every tag of the run."""
        ...


class UserSummaryStore(Protocol):
    """User summary values and metric goals of runs (``domain/user_summaries.py``)."""

    async def set_summary(self, run_id: uuid.UUID, values: dict[str, float],
                          delete_keys: list[str]) -> dict[str, float]:
        """Delete ``delete_keys``, then upsert ``values``; returns the run's whole user
        summary. NOT_FOUND for an unknown run."""
        ...

    async def define_metrics(self, run_id: uuid.UUID, goals: dict[str, str]
                             ) -> dict[str, str]:
        """Upsert goals (``min``/``max``) of keys; returns every goal of the run."""
        ...

    async def goals_for(self, experiment_ids: list[uuid.UUID], key: str) -> set[str]:
        """The distinct goals runs of these experiments defined for ``key``."""
        ...


class RunSearch(Protocol):
    """Filtered, ordered keyset pages of runs."""

    def position_length(self, order: list[OrderKey]) -> int:
        """Number of values in a page position for ``order`` (tiebreaks included)."""
        ...

    async def search(
        self,
        experiment_ids: list[uuid.UUID],
        where: Node | None,
        order: list[OrderKey],
        limit: int,
        after: list[Any] | None,
    ) -> KeysetPage[Run]:
        """Runs of the experiments matching ``where`` in ``order`` (default newest
        first), strictly after the position ``after``; NOT_FOUND naming the first
        unknown experiment."""
        ...


class MetricReader(Protocol):
    """Metric keys and the per-(run, key) summaries kept at ingest."""

    async def list_keys(self, run_id: uuid.UUID) -> list[KeyInfo]:
        """Keys of a run by name, with summaries and ranks; NOT_FOUND for an unknown
        run."""
        ...

    async def key_ids(self, names: list[str]) -> dict[str, int]:
        """Ids of the known names among ``names``."""
        ...

    async def latest(
        self, run_ids: list[uuid.UUID], keys: list[str]
    ) -> dict[uuid.UUID, list[MetricSummary]]:
        """Summaries per run, by key name (``keys`` empty: all); every run present,
        possibly with none; NOT_FOUND naming the first unknown run."""
        ...

    async def best_runs(
        self,
        experiment_ids: list[uuid.UUID],
        key: str,
        maximize: bool,
        on: str,
        limit: int,
        where: Node | None,
    ) -> list[RankedRun]:
        """Runs of the experiments ranked by the summary value ``on`` (last, min or
        max) of ``key``, NaN and missing values left out, ties by run id; NOT_FOUND
        naming the first unknown experiment."""
        ...


class SeriesReader(Protocol):
    """What series reads (``series_query.SeriesQuery``) need from storage."""

    async def attempts(self, run_id: uuid.UUID, key_id: int) -> list[AttemptInfo]:
        """Chunk statistics per (rank, attempt)."""
        ...

    async def chunks(
        self, run_id: uuid.UUID, key_id: int, start_step: int, end_step: int, rank: int | None
    ) -> Chunks:
        """Chunks overlapping the range."""
        ...

    async def chunk_bounds(
        self, run_id: uuid.UUID, key_id: int, start_step: int, end_step: int, rank: int | None
    ) -> list[tuple[int, int]]:
        """(first_step, n) of the chunks in range, by first_step."""
        ...

    async def planned_chunks(
        self,
        run_id: uuid.UUID,
        key_id: int,
        start_step: int,
        end_step: int,
        rank: int | None,
        planner: Callable[[list[AttemptInfo], list[ChunkMeta]], list[ChunkRead] | None],
    ) -> tuple[list[AttemptInfo], Chunks] | None:
        """In one snapshot: attempts and chunk metadata, ``planner``'s choice, then
        the chosen chunks (sketch rows carry their stored n); None if it chose none."""
        ...


class KeyLookup(Protocol):
    """Where API keys are checked (the server's key cache)."""

    async def lookup(self, key_id: str) -> KeyRecord | None:
        """The key's record, None when unknown."""
        ...


class KeyStore(KeyLookup, Protocol):
    """API keys as the server sees them."""

    async def active_count(self) -> int:
        """Keys not revoked."""
        ...


class ArtifactStore(Protocol):
    """Artifact records of runs (references to files, never the files)."""

    async def log_artifacts(self, run_id: uuid.UUID, artifacts: list[NewArtifact]) -> int:
        """Upsert on (run, uri, step), all or nothing; NOT_FOUND for an unknown run.
        A record whose size or hash changed loses its verification. Returns how many
        (uri, step) pairs were new."""
        ...

    async def list_artifacts(
        self, run_id: uuid.UUID, where: ArtifactFilter, limit: int, after: list[Any] | None
    ) -> KeysetPage[Artifact]:
        """By (step, no step first; then uri), strictly after the position ``after``
        (the previous page's last [step key, uri]); NOT_FOUND for an unknown run."""
        ...

    async def record_verification(
        self, run_id: uuid.UUID, results: list[Verification]
    ) -> None:
        """Store outcomes, all or nothing; NOT_FOUND naming the first (uri, step) the
        run has no record of."""
        ...
