"""SearchRuns in PostgreSQL: filter + order + keyset page over runs of some experiments
(implements ``domain.ports.RunSearch``)."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tracker_server.domain.paging import KeysetPage
from tracker_server.domain.run_filter import Node, OrderKey
from tracker_server.domain.runs import Run
from tracker_server.storage.errors import db_errors, position_errors
from tracker_server.storage.existing import EXPERIMENTS, require_ids
from tracker_server.storage.run_filter_sql import after_cursor, compile_filter, compile_ordering
from tracker_server.storage.run_rows import RUN_COLUMNS, runs_from_rows

# Fragments are constants of this module and of run_filter_sql; values are parameters.
_SEARCH = """
SELECT {columns}, {keys}
FROM runs r {joins}
WHERE r.experiment_id = ANY(%s::uuid[]) AND {filter} AND {cursor}
ORDER BY {order}
LIMIT %s
"""


class PgRunSearch:
    """SearchRuns on PostgreSQL."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    def position_length(self, order: list[OrderKey]) -> int:
        """See ``RunSearch.position_length``: one value per sort key (a param or tag
        sorts by two: its number, then its text), plus the run id."""
        return len(compile_ordering(order).keys)

    async def search(
        self,
        experiment_ids: list[uuid.UUID],
        where: Node | None,
        order: list[OrderKey],
        limit: int,
        after: list[Any] | None,
    ) -> KeysetPage[Run]:
        """See ``RunSearch.search``."""
        ordering = compile_ordering(order)
        flt = compile_filter(where)
        cursor = after_cursor(ordering.keys, after) if after is not None else None
        query = _SEARCH.format(
            columns=RUN_COLUMNS,
            keys=ordering.select_list(),
            joins=ordering.joins,
            filter=flt.text,
            cursor=cursor.text if cursor is not None else "TRUE",
            order=ordering.order_by(),
        )
        params: list[Any] = [
            *ordering.params,
            experiment_ids,
            *flt.params,
            *(cursor.params if cursor is not None else []),
            limit + 1,
        ]
        with db_errors(), position_errors():
            async with self._pool.connection() as conn:
                await require_ids(conn, EXPERIMENTS, experiment_ids)
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(query, params)
                rows = await cur.fetchall()
                more = len(rows) > limit
                rows = rows[:limit]
                runs = await runs_from_rows(conn, rows)
        last = [rows[-1][f"k{i}"] for i in range(len(ordering.keys))] if more else None
        return KeysetPage(runs, last)
