"""``RunStore`` in memory."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime

from tests.fakes.memory import InMemoryDatabase
from tracker_server.domain.errors import already_exists
from tracker_server.domain.runs import (
    ExperimentStatus,
    NewRun,
    Run,
    RunStatus,
    check_transition,
)


class FakeRunStore:
    """Runs, params and tags in an :class:`InMemoryDatabase`. Every method checks
    before it writes, so a failing call changes nothing (as a rolled-back transaction)."""

    def __init__(self, db: InMemoryDatabase) -> None:
        self.db = db

    def _clash(self, run_id: uuid.UUID | None, params: dict[str, str]) -> None:
        stored = self.db.params.get(run_id, {}) if run_id is not None else {}
        for k in sorted(params):
            if k in stored and stored[k] != params[k]:
                raise already_exists(
                    f"param {k!r} is already {stored[k]!r}; params are immutable "
                    f"(asked for {params[k]!r})"
                )

    def _existing(self, new: NewRun) -> Run | None:
        if not new.run_key:
            return None  # no key: every call makes a run (NULL keys never conflict)
        return next((r for r in self.db.runs.values()
                     if r.experiment_id == new.experiment_id and r.run_key == new.run_key),
                    None)

    async def create_run(self, new: NewRun) -> tuple[Run, bool]:
        """See ``RunStore.create_run``."""
        self.db.require_experiments([new.experiment_id])
        run = self._existing(new)
        self._clash(run.run_id if run is not None else None, new.params)
        if run is None:
            run_id = uuid.uuid4()
            run = Run(run_id, new.experiment_id,
                      new.name or new.run_key or f"run-{str(run_id)[:8]}", new.run_key,
                      RunStatus.RUNNING, 0, new.seed, new.slurm_job_id, dict(new.metadata),
                      self.db.now(), None)
            self.db.runs[run_id] = run
            self.db.params[run_id], self.db.tags[run_id] = {}, {}
            self.db.resume_tokens[run_id] = new.resume_token if new.resume else ""
            exp = self.db.experiments[new.experiment_id]
            if exp.status == ExperimentStatus.CREATED:
                self.db.experiments[exp.experiment_id] = replace(
                    exp, status=ExperimentStatus.ACTIVE)
            created = True
        else:
            created = False
            token = self.db.resume_tokens[run.run_id]
            if new.resume and (new.resume_token == "" or token != new.resume_token):
                run = replace(run, attempt=run.attempt + 1, status=RunStatus.RUNNING,
                              ended_at=None)
                self.db.runs[run.run_id] = run
                self.db.resume_tokens[run.run_id] = new.resume_token
        self.db.params[run.run_id].update(new.params)
        self.db.tags[run.run_id].update(new.tags)
        return self.db.run(run.run_id), created

    async def get_run(self, run_id: uuid.UUID) -> Run:
        """See ``RunStore.get_run``."""
        (run,) = await self.get_runs([run_id])
        return run

    async def get_runs(self, run_ids: list[uuid.UUID]) -> list[Run]:
        """See ``RunStore.get_runs``."""
        self.db.require_runs(run_ids)
        return [self.db.run(r) for r in run_ids]

    async def require_runs(self, run_ids: list[uuid.UUID]) -> None:
        """See ``RunStore.require_runs``."""
        self.db.require_runs(run_ids)

    async def finish_run(
        self, run_id: uuid.UUID, status: RunStatus, ended_at: datetime | None
    ) -> Run:
        """See ``RunStore.finish_run``."""
        self.db.require_runs([run_id])
        run = self.db.runs[run_id]
        if check_transition(run.status, status):
            self.db.runs[run_id] = replace(run, status=status,
                                           ended_at=ended_at or self.db.now())
        return self.db.run(run_id)

    async def log_params(self, run_id: uuid.UUID, params: dict[str, str]) -> None:
        """See ``RunStore.log_params``."""
        self.db.require_runs([run_id])
        self._clash(run_id, params)
        self.db.params[run_id].update(params)

    async def set_tags(
        self, run_id: uuid.UUID, tags: dict[str, str], delete_keys: list[str]
    ) -> dict[str, str]:
        """See ``RunStore.set_tags``."""
        self.db.require_runs([run_id])
        stored = self.db.tags[run_id]
        for key in delete_keys:
            stored.pop(key, None)
        stored.update(tags)
        return dict(stored)
