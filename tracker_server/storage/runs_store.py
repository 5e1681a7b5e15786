"""Experiments and runs in PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, NamedTuple

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
    check_transition,
)
from tracker_server.storage.errors import db_errors
from tracker_server.storage.run_search import page_token_errors

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
INSERT INTO runs (run_id, experiment_id, name, run_key, seed, slurm_job_id, metadata,
                  resume_token)
VALUES (%(id)s, %(experiment_id)s, %(name)s, %(run_key)s, %(seed)s, %(slurm)s, %(metadata)s,
        %(resume_token)s)
ON CONFLICT (experiment_id, run_key) DO NOTHING
RETURNING {_RUN_COLUMNS}
"""

_SELECT_RUN_BY_KEY = f"""
SELECT {_RUN_COLUMNS} FROM runs WHERE experiment_id = %(experiment_id)s AND run_key = %(run_key)s
FOR UPDATE
"""

_RESUME_RUN = f"""
UPDATE runs SET attempt = attempt + 1, status = {int(RunStatus.RUNNING)}, ended_at = NULL,
    updated_at = now(), resume_token = %(token)s
WHERE run_id = %(id)s AND (%(token)s = '' OR resume_token <> %(token)s)
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
                    # KEY SHARE, not SHARE: it only keeps the experiment from being
                    # deleted, and does not conflict with the activation UPDATE below,
                    # which two concurrent CreateRuns would otherwise deadlock on.
                    "SELECT 1 FROM experiments WHERE experiment_id = %s FOR KEY SHARE",
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
                        "resume_token": new.resume_token if new.resume else "",
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
                        await cur.execute(
                            _RESUME_RUN, {"id": row["run_id"], "token": new.resume_token}
                        )
                        # No row: this token already started the current attempt.
                        row = await cur.fetchone() or row
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


# --- reads and updates of issue 4 -------------------------------------------------------

_LIST_EXPERIMENTS = f"""
SELECT {_EXPERIMENT_COLUMNS} FROM experiments
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

_UPDATE_EXPERIMENT = f"""
UPDATE experiments SET
    status = coalesce(%(status)s::int2, status),
    description = coalesce(%(description)s::text, description),
    updated_at = now()
WHERE experiment_id = %(id)s
RETURNING {_EXPERIMENT_COLUMNS}
"""

_FINISH_RUN = f"""
UPDATE runs SET status = %(status)s, ended_at = coalesce(%(ended_at)s, now()), updated_at = now()
WHERE run_id = %(id)s
RETURNING {_RUN_COLUMNS}
"""

_RUN_FOR_UPDATE = f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = %s FOR UPDATE"
# KEY SHARE: keeps the run from being deleted without blocking status updates.
_RUN_EXISTS_FOR_SHARE = "SELECT 1 FROM runs WHERE run_id = %s FOR KEY SHARE"
_DELETE_TAGS = "DELETE FROM run_tags WHERE run_id = %s AND key = ANY(%s::text[])"


class ExperimentPage(NamedTuple):
    """One page of experiments and the position after its last row."""

    experiments: list[Experiment]
    next_position: list[Any] | None


async def load_kv_many(
    conn: psycopg.AsyncConnection[Any], table: str, run_ids: list[uuid.UUID]
) -> dict[uuid.UUID, dict[str, str]]:
    """Params or tags of many runs (``table`` is one of two constants)."""
    assert table in ("run_params", "run_tags")
    query = (
        "SELECT run_id, key, value FROM run_params WHERE run_id = ANY(%s::uuid[])"
        if table == "run_params"
        else "SELECT run_id, key, value FROM run_tags WHERE run_id = ANY(%s::uuid[])"
    )
    out: dict[uuid.UUID, dict[str, str]] = {r: {} for r in run_ids}
    cur = await conn.execute(query, (run_ids,))
    for run_id, key, value in await cur.fetchall():
        out[run_id][key] = value
    return out


async def runs_from_rows(
    conn: psycopg.AsyncConnection[Any], rows: list[dict[str, Any]]
) -> list[Run]:
    """Domain runs for rows, params and tags loaded in two queries."""
    ids = [row["run_id"] for row in rows]
    params = await load_kv_many(conn, "run_params", ids)
    tags = await load_kv_many(conn, "run_tags", ids)
    return [run_from_row(row, params[row["run_id"]], tags[row["run_id"]]) for row in rows]


class PgRunQueries(PgRunStore):
    """PgRunStore plus the listing, lookup and update operations of the query API."""

    async def get_experiment(self, experiment_id: uuid.UUID) -> Experiment:
        """One experiment; NOT_FOUND when unknown."""
        with db_errors():
            async with self._pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(
                    f"SELECT {_EXPERIMENT_COLUMNS} FROM experiments WHERE experiment_id = %s",
                    (experiment_id,),
                )
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
    ) -> ExperimentPage:
        """A page of experiments, newest first; ``after`` is the previous page's last
        (created_at, experiment_id)."""
        with db_errors(), page_token_errors():
            async with self._pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(
                    _LIST_EXPERIMENTS,
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
        return ExperimentPage([experiment_from_row(r) for r in rows], last)

    async def update_experiment(
        self, experiment_id: uuid.UUID, status: ExperimentStatus | None, description: str | None
    ) -> Experiment:
        """Set status and/or description; NOT_FOUND when unknown."""
        with db_errors():
            async with self._pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(
                    _UPDATE_EXPERIMENT,
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

    async def finish_run(
        self, run_id: uuid.UUID, status: RunStatus, ended_at: datetime | None
    ) -> Run:
        """running -> finished/failed/killed with ended_at (row-locked, so concurrent
        calls serialise); repeating the current terminal status is a no-op."""
        with db_errors():
            async with self._pool.connection() as conn, conn.transaction():
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(_RUN_FOR_UPDATE, (run_id,))
                row = await cur.fetchone()
                if row is None:
                    raise not_found(f"run {run_id} not found")
                if check_transition(RunStatus(row["status"]), status):
                    await cur.execute(
                        _FINISH_RUN, {"id": run_id, "status": int(status), "ended_at": ended_at}
                    )
                    row = await cur.fetchone()
                    assert row is not None
                params = await load_kv(conn, "run_params", run_id)
                tags = await load_kv(conn, "run_tags", run_id)
        return run_from_row(row, params, tags)

    async def log_params(self, run_id: uuid.UUID, params: dict[str, str]) -> None:
        """Add params atomically: all of them, or none on a clash (ALREADY_EXISTS)."""
        with db_errors():
            async with self._pool.connection() as conn, conn.transaction():
                await self._require_run(conn, run_id)
                await set_params(conn, run_id, params)

    async def set_tags(
        self, run_id: uuid.UUID, tags: dict[str, str], delete_keys: list[str]
    ) -> dict[str, str]:
        """Delete ``delete_keys``, then upsert ``tags``; returns every tag of the run."""
        with db_errors():
            async with self._pool.connection() as conn, conn.transaction():
                await self._require_run(conn, run_id)
                if delete_keys:
                    await conn.execute(_DELETE_TAGS, (run_id, delete_keys))
                await set_tags(conn, run_id, tags)
                return await load_kv(conn, "run_tags", run_id)

    async def get_runs(self, run_ids: list[uuid.UUID]) -> list[Run]:
        """Runs in the order of ``run_ids``; NOT_FOUND naming the first unknown one."""
        with db_errors():
            async with self._pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(
                    f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ANY(%s::uuid[])",
                    (run_ids,),
                )
                rows = {row["run_id"]: row for row in await cur.fetchall()}
                missing = [r for r in run_ids if r not in rows]
                if missing:
                    raise not_found(f"run {missing[0]} not found")
                return await runs_from_rows(conn, [rows[r] for r in run_ids])

    @staticmethod
    async def _require_run(conn: psycopg.AsyncConnection[Any], run_id: uuid.UUID) -> None:
        cur = await conn.execute(_RUN_EXISTS_FOR_SHARE, (run_id,))
        if await cur.fetchone() is None:
            raise not_found(f"run {run_id} not found")
