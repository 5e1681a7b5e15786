"""The one column list of a run (table aliased ``r``) and the row -> ``Run`` mapping,
shared by the run store and run search."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

import psycopg

from tracker_server.domain.runs import Run, RunStatus

RUN_COLUMNS = (
    "r.run_id, r.experiment_id, r.name, coalesce(r.run_key, '') AS run_key, r.status, "
    "r.attempt, r.seed, r.slurm_job_id, r.metadata, r.created_at, r.ended_at"
)

_PARAMS_OF = "SELECT run_id, key, value FROM run_params WHERE run_id = ANY(%s::uuid[])"
_TAGS_OF = "SELECT run_id, key, value FROM run_tags WHERE run_id = ANY(%s::uuid[])"
SUMMARY_OF = "SELECT run_id, key, value FROM run_user_summary WHERE run_id = ANY(%s::uuid[])"
GOALS_OF = "SELECT run_id, key, goal FROM run_metric_goals WHERE run_id = ANY(%s::uuid[])"


def run_from_row(row: dict[str, Any], params: dict[str, str], tags: dict[str, str]) -> Run:
    """Map a ``RUN_COLUMNS`` row (plus params and tags) to the domain record."""
    return Run(
        run_id=row["run_id"],
        experiment_id=row["experiment_id"],
        name=row["name"],
        run_key=row["run_key"],
        status=RunStatus(row["status"]),
        attempt=row["attempt"],
        seed=row["seed"],
        slurm_job_id=row["slurm_job_id"],
        metadata=row["metadata"],
        created_at=row["created_at"],
        ended_at=row["ended_at"],
        params=params,
        tags=tags,
    )


async def kv_of(conn: psycopg.AsyncConnection[Any], query: str, run_ids: list[uuid.UUID]
                ) -> dict[uuid.UUID, dict[str, Any]]:
    """``{run_id: {key: value}}`` of a (run_id, key, value) query over ``run_ids``
    (every run present, with ``{}`` when it has no rows)."""
    out: dict[uuid.UUID, dict[str, Any]] = {r: {} for r in run_ids}
    cur = await conn.execute(query, (run_ids,))
    for run_id, key, value in await cur.fetchall():
        out[run_id][key] = value
    return out


async def tags_of(conn: psycopg.AsyncConnection[Any], run_id: uuid.UUID) -> dict[str, str]:
    """Every tag of one run."""
    return (await kv_of(conn, _TAGS_OF, [run_id]))[run_id]


async def runs_from_rows(conn: psycopg.AsyncConnection[Any], rows: list[dict[str, Any]]
                         ) -> list[Run]:
    """Domain runs for ``RUN_COLUMNS`` rows, their params and tags loaded in two
    queries."""
    ids = [row["run_id"] for row in rows]
    params = await kv_of(conn, _PARAMS_OF, ids)
    tags = await kv_of(conn, _TAGS_OF, ids)
    summary = await kv_of(conn, SUMMARY_OF, ids)
    goals = await kv_of(conn, GOALS_OF, ids)
    return [replace(run_from_row(row, params[row["run_id"]], tags[row["run_id"]]),
                    summary=summary[row["run_id"]], metric_goals=goals[row["run_id"]])
            for row in rows]
