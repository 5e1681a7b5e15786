"""The metric names a run already has (for ``domain.key_limit``)."""

from __future__ import annotations

import uuid

from psycopg_pool import AsyncConnectionPool

from tracker_server.storage.errors import db_errors

_NAMES_SQL = """
SELECT k.name FROM run_metric_summary s JOIN metric_keys k USING (key_id)
WHERE s.run_id = %s
"""


class PgRunKeyNames:
    """Implements ``domain.key_limit.RunKeyNames`` from the run's summaries."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def run_key_names(self, run_id: uuid.UUID) -> set[str]:
        """Names with a summary row in the run."""
        with db_errors():
            async with self._pool.connection() as conn:
                cur = await conn.execute(_NAMES_SQL, (run_id,))
                return {str(r[0]) for r in await cur.fetchall()}
