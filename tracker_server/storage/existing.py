"""Existence checks by id: NOT_FOUND naming the first missing one."""

from __future__ import annotations

import uuid
from typing import Any, NamedTuple

import psycopg

from tracker_server.domain.errors import check_all_found


class IdCheck(NamedTuple):
    """A query returning which of the ids (one ``uuid[]`` parameter) exist, and what
    they are ids of (for the NOT_FOUND message)."""

    query: str
    what: str


RUNS = IdCheck("SELECT run_id FROM runs WHERE run_id = ANY(%s::uuid[])", "run")
EXPERIMENTS = IdCheck(
    "SELECT experiment_id FROM experiments WHERE experiment_id = ANY(%s::uuid[])", "experiment"
)
# KEY SHARE: keeps the rows from being deleted without blocking updates of their other
# columns (a run's status, ended_at).
RUNS_FOR_KEY_SHARE = IdCheck(
    "SELECT run_id FROM runs WHERE run_id = ANY(%s::uuid[]) FOR KEY SHARE", "run"
)


async def require_ids(conn: psycopg.AsyncConnection[Any], check: IdCheck, ids: list[uuid.UUID]
                      ) -> None:
    """NOT_FOUND naming the first of ``ids`` that ``check`` does not find."""
    cur = await conn.execute(check.query, (ids,))
    found = {row[0] for row in await cur.fetchall()}
    check_all_found(ids, found, check.what)
