"""Experiments in PostgreSQL (implements ``domain.ports.ExperimentStore``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tracker_server.domain.errors import already_exists, not_found
from tracker_server.domain.paging import KeysetPage
from tracker_server.domain.runs import Experiment, ExperimentStatus
from tracker_server.storage.errors import db_errors, position_errors

_COLUMNS = "experiment_id, name, owner, description, status, created_at"

_INSERT = f"""
INSERT INTO experiments (experiment_id, name, owner, description)
VALUES (%(id)s, %(name)s, %(owner)s, %(description)s)
ON CONFLICT (owner, name) DO NOTHING
RETURNING {_COLUMNS}
"""

_BY_NAME = f"SELECT {_COLUMNS} FROM experiments WHERE owner = %s AND name = %s"
_BY_ID = f"SELECT {_COLUMNS} FROM experiments WHERE experiment_id = %s"

_LIST = f"""
SELECT {_COLUMNS} FROM experiments
WHERE (%(owner)s::text IS NULL OR owner = %(owner)s::text)
  AND status = ANY(%(statuses)s::int2[])
  AND (%(prefix)s::text IS NULL OR starts_with(name, %(prefix)s::text))
  AND (%(after)s::timestamptz IS NULL OR created_at >= %(after)s::timestamptz)
  AND (%(before)s::timestamptz IS NULL OR created_at < %(before)s::timestamptz)
  AND (%(c_at)s::timestamptz IS NULL
       OR (created_at, experiment_id) < (%(c_at)s::timestamptz, %(c_id)s::uuid))
ORDER BY created_at DESC, experiment_id DESC
LIMIT %(limit)s
"""

_UPDATE = f"""
UPDATE experiments SET
    status = coalesce(%(status)s::int2, status),
    description = coalesce(%(description)s::text, description),
    updated_at = now()
WHERE experiment_id = %(id)s
RETURNING {_COLUMNS}
"""


def experiment_from_row(row: dict[str, Any]) -> Experiment:
    """Map an experiments row to the domain record."""
    return Experiment(
        experiment_id=row["experiment_id"],
        name=row["name"],
        owner=row["owner"],
        description=row["description"],
        status=ExperimentStatus(row["status"]),
        created_at=row["created_at"],
    )


class PgExperimentStore:
    """Experiments: create, get, list, update."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def create_experiment(
        self, name: str, owner: str, description: str, get_if_exists: bool
    ) -> tuple[Experiment, bool]:
        """See ``ExperimentStore.create_experiment``."""
        with db_errors():
            async with self._pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(
                    _INSERT,
                    {"id": uuid.uuid4(), "name": name, "owner": owner, "description": description},
                )
                row = await cur.fetchone()
                if row is not None:
                    return experiment_from_row(row), True
                if get_if_exists:
                    await cur.execute(_BY_NAME, (owner, name))
                    row = await cur.fetchone()
                    if row is not None:
                        return experiment_from_row(row), False
        raise already_exists(f"experiment {name!r} of owner {owner!r} already exists")

    async def get_experiment(self, experiment_id: uuid.UUID) -> Experiment:
        """See ``ExperimentStore.get_experiment``."""
        with db_errors():
            async with self._pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(_BY_ID, (experiment_id,))
                row = await cur.fetchone()
        if row is None:
            raise not_found(f"experiment {experiment_id} not found")
        return experiment_from_row(row)

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
        with db_errors(), position_errors():
            async with self._pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(
                    _LIST,
                    {
                        "owner": owner,
                        "statuses": [int(s) for s in statuses],
                        "prefix": name_prefix,
                        "after": created_after,
                        "before": created_before,
                        "c_at": after[0] if after else None,
                        "c_id": after[1] if after else None,
                        "limit": limit + 1,
                    },
                )
                rows = await cur.fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        last = [rows[-1]["created_at"], rows[-1]["experiment_id"]] if more else None
        return KeysetPage([experiment_from_row(r) for r in rows], last)

    async def update_experiment(
        self, experiment_id: uuid.UUID, status: ExperimentStatus | None, description: str | None
    ) -> Experiment:
        """See ``ExperimentStore.update_experiment``."""
        with db_errors():
            async with self._pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(
                    _UPDATE,
                    {
                        "id": experiment_id,
                        "status": int(status) if status is not None else None,
                        "description": description,
                    },
                )
                row = await cur.fetchone()
        if row is None:
            raise not_found(f"experiment {experiment_id} not found")
        return experiment_from_row(row)
