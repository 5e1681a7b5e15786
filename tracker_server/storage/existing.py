"""Existence checks by id: NOT_FOUND naming the first missing one."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from tracker_server.domain.errors import check_all_found

RUNS = "SELECT run_id FROM runs WHERE run_id = ANY(%s::uuid[])"
# KEY SHARE: keeps the rows from being deleted without blocking status updates (and
# without conflicting with an experiment's activation by a concurrent CreateRun).
RUNS_FOR_KEY_SHARE = "SELECT run_id FROM runs WHERE run_id = ANY(%s::uuid[]) FOR KEY SHARE"
EXPERIMENTS = "SELECT experiment_id FROM experiments WHERE experiment_id = ANY(%s::uuid[])"
EXPERIMENTS_FOR_KEY_SHARE = (
    "SELECT experiment_id FROM experiments WHERE experiment_id = ANY(%s::uuid[]) FOR KEY SHARE"
)

_WHAT = {RUNS: "run", RUNS_FOR_KEY_SHARE: "run", EXPERIMENTS: "experiment",
         EXPERIMENTS_FOR_KEY_SHARE: "experiment"}


async def require_ids(conn: psycopg.AsyncConnection[Any], query: str, ids: list[uuid.UUID]
                      ) -> None:
    """Run ``query`` (one of this module's constants) for ``ids``; NOT_FOUND naming the
    first id it does not return."""
    cur = await conn.execute(query, (ids,))
    found = {row[0] for row in await cur.fetchall()}
    check_all_found(ids, found, _WHAT[query])
