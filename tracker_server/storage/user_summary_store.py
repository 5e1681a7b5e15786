"""User summaries and metric goals in PostgreSQL (implements
``domain.ports.UserSummaryStore``; tables from migration 0012)."""

from __future__ import annotations

import uuid

from psycopg_pool import AsyncConnectionPool

from tracker_server.storage.errors import db_errors
from tracker_server.storage.existing import RUNS_FOR_KEY_SHARE, require_ids
from tracker_server.storage.run_rows import GOALS_OF, SUMMARY_OF, kv_of

_UPSERT_SUMMARY = """
INSERT INTO run_user_summary (run_id, key, value)
SELECT %s, k, v FROM unnest(%s::text[], %s::float8[]) AS t(k, v)
ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
"""
_DELETE_SUMMARY = "DELETE FROM run_user_summary WHERE run_id = %s AND key = ANY(%s::text[])"
_UPSERT_GOALS = """
INSERT INTO run_metric_goals (run_id, key, goal)
SELECT %s, k, g FROM unnest(%s::text[], %s::text[]) AS t(k, g)
ON CONFLICT (run_id, key) DO UPDATE SET goal = excluded.goal
"""
_GOALS_FOR_KEY = """
SELECT DISTINCT g.goal FROM run_metric_goals g JOIN runs r ON r.run_id = g.run_id
WHERE g.key = %s AND r.experiment_id = ANY(%s::uuid[])
"""


class PgUserSummaryStore:
    """User summary values and goals, one transaction per call."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def set_summary(self, run_id: uuid.UUID, values: dict[str, float],
                          delete_keys: list[str]) -> dict[str, float]:
        """See ``UserSummaryStore.set_summary``."""
        with db_errors():
            async with self._pool.connection() as conn, conn.transaction():
                await require_ids(conn, RUNS_FOR_KEY_SHARE, [run_id])
                if delete_keys:
                    await conn.execute(_DELETE_SUMMARY, (run_id, delete_keys))
                if values:
                    keys = sorted(values)
                    await conn.execute(_UPSERT_SUMMARY,
                                       (run_id, keys, [values[k] for k in keys]))
                return (await kv_of(conn, SUMMARY_OF, [run_id]))[run_id]

    async def define_metrics(self, run_id: uuid.UUID, goals: dict[str, str]
                             ) -> dict[str, str]:
        """See ``UserSummaryStore.define_metrics``."""
        with db_errors():
            async with self._pool.connection() as conn, conn.transaction():
                await require_ids(conn, RUNS_FOR_KEY_SHARE, [run_id])
                keys = sorted(goals)
                await conn.execute(_UPSERT_GOALS, (run_id, keys, [goals[k] for k in keys]))
                return (await kv_of(conn, GOALS_OF, [run_id]))[run_id]

    async def goals_for(self, experiment_ids: list[uuid.UUID], key: str) -> set[str]:
        """See ``UserSummaryStore.goals_for``."""
        with db_errors():
            async with self._pool.connection() as conn:
                cur = await conn.execute(_GOALS_FOR_KEY, (key, experiment_ids))
                return {str(row[0]) for row in await cur.fetchall()}
