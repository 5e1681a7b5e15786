"""Experiments and runs in PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from tracker_server.domain.errors import already_exists, not_found
from tracker_server.domain.runs import (
    Experiment,
    ExperimentStatus,
    NewRun,
    Run,
    RunStatus,
)
from tracker_server.storage.errors import db_errors

_EXPERIMENT_COLUMNS = "experiment_id, name, owner, description, status, created_at"
_RUN_COLUMNS = (
    "run_id, experiment_id, name, coalesce(run_key, '') AS run_key, status, attempt, seed, "
    "slurm_job_id, metadata, created_at, ended_at"
)

_INSERT_EXPERIMENT = f"""
INSERT INTO experiments (experiment_id, name, owner, description)
VALUES (%(id)s, %(name)s, %(owner)s, %(description)s)
ON CONFLICT (owner, name) DO NOTHING
RETURNING {_EXPERIMENT_COLUMNS}
"""

_INSERT_RUN = f"""
INSERT INTO runs (run_id, experiment_id, name, run_key, seed, slurm_job_id, metadata)
VALUES (%(id)s, %(experiment_id)s, %(name)s, %(run_key)s, %(seed)s, %(slurm)s, %(metadata)s)
ON CONFLICT (experiment_id, run_key) DO NOTHING
RETURNING {_RUN_COLUMNS}
"""

_SELECT_RUN_BY_KEY = f"""
SELECT {_RUN_COLUMNS} FROM runs WHERE experiment_id = %(experiment_id)s AND run_key = %(run_key)s
FOR UPDATE
"""

_RESUME_RUN = f"""
UPDATE runs SET attempt = attempt + 1, status = {int(RunStatus.RUNNING)}, ended_at = NULL,
    updated_at = now()
WHERE run_id = %(id)s
RETURNING {_RUN_COLUMNS}
"""

_ACTIVATE_EXPERIMENT = f"""
UPDATE experiments SET status = {int(ExperimentStatus.ACTIVE)}, updated_at = now()
WHERE experiment_id = %s AND status = {int(ExperimentStatus.CREATED)}
"""

# Params are immutable: an existing key keeps its value; the caller compares.
_INSERT_PARAMS = """
INSERT INTO run_params (run_id, key, value)
SELECT %s, k, v FROM unnest(%s::text[], %s::text[]) AS p(k, v)
ON CONFLICT (run_id, key) DO NOTHING
"""
_SELECT_PARAMS = "SELECT key, value FROM run_params WHERE run_id = %s AND key = ANY(%s::text[])"

_UPSERT_TAGS = """
INSERT INTO run_tags (run_id, key, value)
SELECT %s, k, v FROM unnest(%s::text[], %s::text[]) AS t(k, v)
ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value
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


def run_from_row(row: dict[str, Any], params: dict[str, str], tags: dict[str, str]) -> Run:
    """Map a runs row (plus params and tags) to the domain record."""
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


async def set_params(
    conn: psycopg.AsyncConnection[Any], run_id: uuid.UUID, params: dict[str, str]
) -> None:
    """Insert params; ALREADY_EXISTS when a key already holds a different value."""
    if not params:
        return
    keys = sorted(params)
    await conn.execute(_INSERT_PARAMS, (run_id, keys, [params[k] for k in keys]))
    cur = await conn.execute(_SELECT_PARAMS, (run_id, keys))
    stored = dict(await cur.fetchall())
    clashes = sorted(k for k in keys if stored.get(k) != params[k])
    if clashes:
        k = clashes[0]
        raise already_exists(
            f"param {k!r} is already {stored.get(k)!r}; params are immutable "
            f"(asked for {params[k]!r})"
        )


async def set_tags(
    conn: psycopg.AsyncConnection[Any], run_id: uuid.UUID, tags: dict[str, str]
) -> None:
    """Insert or replace tags."""
    if tags:
        keys = sorted(tags)
        await conn.execute(_UPSERT_TAGS, (run_id, keys, [tags[k] for k in keys]))


async def load_kv(
    conn: psycopg.AsyncConnection[Any], table: str, run_id: uuid.UUID
) -> dict[str, str]:
    """All params or tags of a run (``table`` is one of two constants)."""
    assert table in ("run_params", "run_tags")
    query = (
        "SELECT key, value FROM run_params WHERE run_id = %s"
        if table == "run_params"
        else "SELECT key, value FROM run_tags WHERE run_id = %s"
    )
    cur = await conn.execute(query, (run_id,))
    return dict(await cur.fetchall())


class PgRunStore:
    """Experiments, runs, params and tags."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def create_experiment(
        self, name: str, owner: str, description: str, get_if_exists: bool = False
    ) -> tuple[Experiment, bool]:
        """Create an experiment; ALREADY_EXISTS when (owner, name) is taken, unless
        ``get_if_exists``, which returns the existing one. Returns (experiment, created)."""
        with db_errors():
            async with self._pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(
                    _INSERT_EXPERIMENT,
                    {"id": uuid.uuid4(), "name": name, "owner": owner, "description": description},
                )
                row = await cur.fetchone()
                if row is not None:
                    return experiment_from_row(row), True
                if get_if_exists:
                    await cur.execute(
                        f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments "
                        "WHERE owner = %s AND name = %s",
                        (owner, name),
                    )
                    row = await cur.fetchone()
                    if row is not None:
                        return experiment_from_row(row), False
        raise already_exists(f"experiment {name!r} of owner {owner!r} already exists")

    async def create_run(self, new: NewRun) -> tuple[Run, bool]:
        """Create a run, or return the existing one with the same run key."""
        with db_errors():
            async with self._pool.connection() as conn, conn.transaction():
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(
                    "SELECT 1 FROM experiments WHERE experiment_id = %s FOR SHARE",
                    (new.experiment_id,),
                )
                if await cur.fetchone() is None:
                    raise not_found(f"experiment {new.experiment_id} not found")
                run_id = uuid.uuid4()
                await cur.execute(
                    _INSERT_RUN,
                    {
                        "id": run_id,
                        "experiment_id": new.experiment_id,
                        "name": new.name or new.run_key or f"run-{str(run_id)[:8]}",
                        "run_key": new.run_key or None,
                        "seed": new.seed,
                        "slurm": new.slurm_job_id,
                        "metadata": Jsonb(new.metadata),
                    },
                )
                row = await cur.fetchone()
                created = row is not None
                if row is None:
                    await cur.execute(
                        _SELECT_RUN_BY_KEY,
                        {"experiment_id": new.experiment_id, "run_key": new.run_key},
                    )
                    row = await cur.fetchone()
                    assert row is not None  # the conflicting row exists and is now locked
                    if new.resume:
                        await cur.execute(_RESUME_RUN, {"id": row["run_id"]})
                        row = await cur.fetchone()
                        assert row is not None
                else:
                    await conn.execute(_ACTIVATE_EXPERIMENT, (new.experiment_id,))
                await set_params(conn, row["run_id"], new.params)
                await set_tags(conn, row["run_id"], new.tags)
                params = await load_kv(conn, "run_params", row["run_id"])
                tags = await load_kv(conn, "run_tags", row["run_id"])
        return run_from_row(row, params, tags), created

    async def get_run(self, run_id: uuid.UUID) -> Run:
        """One run with params and tags; NOT_FOUND when unknown."""
        with db_errors():
            async with self._pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = %s", (run_id,))
                row = await cur.fetchone()
                if row is None:
                    raise not_found(f"run {run_id} not found")
                params = await load_kv(conn, "run_params", run_id)
                tags = await load_kv(conn, "run_tags", run_id)
        return run_from_row(row, params, tags)
