"""In-memory ``UserSummaryStore`` (user summary values and metric goals)."""

from __future__ import annotations

import uuid

from tests.fakes.memory import InMemoryDatabase


class FakeUserSummaryStore:
    """User summaries and goals in an :class:`InMemoryDatabase`."""

    def __init__(self, db: InMemoryDatabase) -> None:
        self.db = db

    async def set_summary(self, run_id: uuid.UUID, values: dict[str, float],
                          delete_keys: list[str]) -> dict[str, float]:
        """See ``UserSummaryStore.set_summary``."""
        self.db.require_runs([run_id])
        summary = self.db.user_summary.setdefault(run_id, {})
        for key in delete_keys:
            summary.pop(key, None)
        summary.update(values)
        return dict(summary)

    async def define_metrics(self, run_id: uuid.UUID, goals: dict[str, str]
                             ) -> dict[str, str]:
        """See ``UserSummaryStore.define_metrics``."""
        self.db.require_runs([run_id])
        defined = self.db.metric_goals.setdefault(run_id, {})
        defined.update(goals)
        return dict(defined)

    async def goals_for(self, experiment_ids: list[uuid.UUID], key: str) -> set[str]:
        """See ``UserSummaryStore.goals_for``."""
        wanted = set(experiment_ids)
        return {goals[key] for run_id, goals in self.db.metric_goals.items()
                if key in goals and self.db.runs[run_id].experiment_id in wanted}
