"""``ExperimentStore`` in memory."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from tests.fakes.memory import InMemoryDatabase
from tracker_server.domain.errors import already_exists, not_found
from tracker_server.domain.paging import KeysetPage, PositionError
from tracker_server.domain.runs import Experiment, ExperimentStatus


def as_time(value: Any) -> datetime:
    """A position value as timestamptz would cast it; ``PositionError`` when it is not
    one."""
    if not isinstance(value, datetime):
        try:
            value = datetime.fromisoformat(str(value))
        except ValueError:
            raise PositionError() from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def as_uuid(value: Any) -> uuid.UUID:
    """A position value as uuid would cast it; ``PositionError`` when it is not one."""
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise PositionError() from None


class FakeExperimentStore:
    """Experiments in an :class:`InMemoryDatabase`."""

    def __init__(self, db: InMemoryDatabase) -> None:
        self.db = db

    async def create_experiment(
        self, name: str, owner: str, description: str, get_if_exists: bool
    ) -> tuple[Experiment, bool]:
        """See ``ExperimentStore.create_experiment``."""
        for exp in self.db.experiments.values():
            if exp.owner == owner and exp.name == name:
                if get_if_exists:
                    return exp, False
                raise already_exists(f"experiment {name!r} of owner {owner!r} already exists")
        exp = Experiment(uuid.uuid4(), name, owner, description, ExperimentStatus.CREATED,
                         self.db.now())
        self.db.experiments[exp.experiment_id] = exp
        return exp, True

    async def get_experiment(self, experiment_id: uuid.UUID) -> Experiment:
        """See ``ExperimentStore.get_experiment``."""
        if experiment_id not in self.db.experiments:
            raise not_found(f"experiment {experiment_id} not found")
        return self.db.experiments[experiment_id]

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
        """See ``ExperimentStore.list_experiments``."""
        cursor = (as_time(after[0]), as_uuid(after[1])) if after else None
        rows = sorted(
            (e for e in self.db.experiments.values()
             if (owner is None or e.owner == owner)
             and e.status in statuses
             and (name_prefix is None or e.name.startswith(name_prefix))
             and (created_after is None or e.created_at >= created_after)
             and (created_before is None or e.created_at < created_before)
             and (cursor is None or (e.created_at, e.experiment_id) < cursor)),
            key=lambda e: (e.created_at, e.experiment_id), reverse=True,
        )
        page = rows[:limit]
        more = len(rows) > limit
        last = [page[-1].created_at, page[-1].experiment_id] if more else None
        return KeysetPage(page, last)

    async def update_experiment(
        self, experiment_id: uuid.UUID, status: ExperimentStatus | None, description: str | None
    ) -> Experiment:
        """See ``ExperimentStore.update_experiment``."""
        exp = await self.get_experiment(experiment_id)
        exp = replace(exp, status=exp.status if status is None else status,
                      description=exp.description if description is None else description)
        self.db.experiments[experiment_id] = exp
        return exp
