"""SearchRuns: filter + order + keyset page over runs of some experiments."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tracker_server.domain.errors import invalid, not_found
from tracker_server.domain.run_filter import Node, OrderKey
from tracker_server.domain.runs import Run
from tracker_server.storage.errors import db_errors
from tracker_server.storage.run_filter_sql import (
    Ordering,
    after_cursor,
    compile_filter,
    compile_ordering,
)

_RUN_COLUMNS = (
    "r.run_id, r.experiment_id, r.name, coalesce(r.run_key, '') AS run_key, r.status, "
    "r.attempt, r.seed, r.slurm_job_id, r.metadata, r.created_at, r.ended_at"
)
_EXPERIMENTS_EXIST = "SELECT experiment_id FROM experiments WHERE experiment_id = ANY(%s::uuid[])"

# Fragments are constants of this module and of run_filter_sql; values are parameters.
_SEARCH = """
SELECT {columns}, {keys}
FROM runs r {joins}
WHERE r.experiment_id = ANY(%s::uuid[]) AND {filter} AND {cursor}
ORDER BY {order}
LIMIT %s
"""


@contextmanager
def page_token_errors(what: str = "page_token") -> Iterator[None]:
    """A token whose values do not fit the sort key types (hand-edited, or from an
    older server) fails inside PostgreSQL: report it as INVALID_ARGUMENT."""
    try:
        yield
    except psycopg.errors.DataError as exc:
        raise invalid(f"{what} is malformed", [(what, "malformed")]) from exc


class RunPage(NamedTuple):
    """A page of runs and the sort-key values of its last row (None on the last page)."""

    runs: list[Run]
    next_position: list[Any] | None


class PgRunSearch:
    """SearchRuns on PostgreSQL."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    @staticmethod
    def key_count(order: list[OrderKey]) -> int:
        """Number of values in a page position for this order."""
        return len(compile_ordering(order).keys)

    async def search(
        self,
        experiment_ids: list[uuid.UUID],
        where: Node | None,
        order: list[OrderKey],
        limit: int,
        after: list[Any] | None,
    ) -> RunPage:
        """Runs matching ``where``, in ``order``, after the position ``after``."""
        from tracker_server.storage.runs_store import runs_from_rows

        ordering: Ordering = compile_ordering(order)
        flt = compile_filter(where)
        cursor = after_cursor(ordering.keys, after) if after is not None else None
        query = _SEARCH.format(
            columns=_RUN_COLUMNS,
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
        n_keys = len(ordering.keys)
        with db_errors(), page_token_errors():
            async with self._pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(_EXPERIMENTS_EXIST, (experiment_ids,))
                found = {row["experiment_id"] for row in await cur.fetchall()}
                missing = [e for e in experiment_ids if e not in found]
                if missing:
                    raise not_found(f"experiment {missing[0]} not found")
                await cur.execute(query, params)
                rows = await cur.fetchall()
                more = len(rows) > limit
                rows = rows[:limit]
                runs = await runs_from_rows(conn, rows)
        last = [rows[-1][f"k{i}"] for i in range(n_keys)] if more else None
        return RunPage(runs, last)
