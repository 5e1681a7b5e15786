"""Runs, params and tags in PostgreSQL (implements ``domain.ports.RunStore``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from tracker_server.domain.errors import already_exists, check_all_found, not_found
from tracker_server.domain.runs import ExperimentStatus, NewRun, Run, RunStatus, check_transition
from tracker_server.storage.citus import keyed_run_id
from tracker_server.storage.errors import db_errors
from tracker_server.storage.existing import (
    RUNS,
    RUNS_FOR_KEY_SHARE,
    require_ids,
)
from tracker_server.storage.run_rows import RUN_COLUMNS, runs_from_rows, tags_of

_INSERT_RUN = f"""
INSERT INTO runs AS r (run_id, experiment_id, name, run_key, seed, slurm_job_id, metadata,
                       resume_token)
VALUES (%(id)s, %(experiment_id)s, %(name)s, %(run_key)s, %(seed)s, %(slurm)s, %(metadata)s,
        %(resume_token)s)
ON CONFLICT DO NOTHING
RETURNING {RUN_COLUMNS}
"""

# A keyed run's id is derived from its key (storage/citus.py); this finds the runs made
# before that rule, whose ids are random.
_RUN_ID_BY_KEY = "SELECT run_id FROM runs WHERE experiment_id = %s AND run_key = %s"

# No row when this resume token already started the current attempt.
_RESUME_RUN = f"""
UPDATE runs r SET attempt = r.attempt + 1, status = {int(RunStatus.RUNNING)}, ended_at = NULL,
    updated_at = now(), resume_token = %(token)s
WHERE r.run_id = %(id)s AND (%(token)s = '' OR r.resume_token <> %(token)s)
RETURNING {RUN_COLUMNS}
"""

_EXPERIMENT_STATUS = "SELECT status FROM experiments WHERE experiment_id = %s"

_ACTIVATE_EXPERIMENT = f"""
UPDATE experiments SET status = {int(ExperimentStatus.ACTIVE)}, updated_at = now()
WHERE experiment_id = %s AND status = {int(ExperimentStatus.CREATED)}
"""

_RUNS_BY_ID = f"SELECT {RUN_COLUMNS} FROM runs r WHERE r.run_id = ANY(%s::uuid[])"
_RUN_FOR_UPDATE = f"SELECT {RUN_COLUMNS} FROM runs r WHERE r.run_id = %s FOR UPDATE"

# Two statements rather than coalesce(%(ended_at)s, now()): Citus refuses now() inside
# COALESCE/CASE in a write (storage/citus.py).
_FINISH_RUN = f"""
UPDATE runs r SET status = %(status)s, ended_at = %(ended_at)s, updated_at = now()
WHERE r.run_id = %(id)s
RETURNING {RUN_COLUMNS}
"""
_FINISH_RUN_NOW = _FINISH_RUN.replace("%(ended_at)s", "now()")

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
_DELETE_TAGS = "DELETE FROM run_tags WHERE run_id = %s AND key = ANY(%s::text[])"


async def _add_params(
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


async def _upsert_tags(
    conn: psycopg.AsyncConnection[Any], run_id: uuid.UUID, tags: dict[str, str]
) -> None:
    if tags:
        keys = sorted(tags)
        await conn.execute(_UPSERT_TAGS, (run_id, keys, [tags[k] for k in keys]))


class PgRunStore:
    """Runs with their params and tags."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def create_run(self, new: NewRun) -> tuple[Run, bool]:
        """See ``RunStore.create_run``."""
        with db_errors():
            async with self._pool.connection() as conn:
                run_id = uuid.uuid4()
                if new.run_key:
                    run_id = keyed_run_id(new.experiment_id, new.run_key)
                    # Before the transaction: on Citus this reads every shard, and a
                    # transaction that did so may not then write to experiments (a
                    # reference table). Runs with random ids are never made any more, so
                    # none can appear between this read and the insert.
                    found = await (await conn.execute(
                        _RUN_ID_BY_KEY, (new.experiment_id, new.run_key))).fetchone()
                    await conn.commit()
                    if found is not None:
                        run_id = found[0]
                async with conn.transaction():
                    run, created = await self._create_run(conn, new, run_id)
        return run, created

    @staticmethod
    async def _create_run(conn: psycopg.AsyncConnection[Any], new: NewRun, run_id: uuid.UUID
                          ) -> tuple[Run, bool]:
        # No row lock on the experiment: runs' foreign key keeps it from being deleted
        # under the new run. On Citus a row lock on a reference table locks all of it,
        # and two CreateRuns that each held one, then activated their experiment,
        # deadlocked (storage/citus.py).
        found = await (await conn.execute(_EXPERIMENT_STATUS, (new.experiment_id,))).fetchone()
        if found is None:
            raise not_found(f"experiment {new.experiment_id} not found")
        cur = conn.cursor(row_factory=dict_row)
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
            # The key's run exists (a concurrent CreateRun may just have made it,
            # with the same derived id): lock it by id, on its shard.
            await cur.execute(_RUN_FOR_UPDATE, (run_id,))
            row = await cur.fetchone()
            assert row is not None  # the conflicting row exists and is now locked
            if new.resume:
                await cur.execute(
                    _RESUME_RUN, {"id": row["run_id"], "token": new.resume_token}
                )
                row = await cur.fetchone() or row
        elif found[0] == ExperimentStatus.CREATED:
            # Only the experiment's first run writes to it: an active experiment's
            # CreateRuns never queue behind one another on its row.
            await conn.execute(_ACTIVATE_EXPERIMENT, (new.experiment_id,))
        await _add_params(conn, row["run_id"], new.params)
        await _upsert_tags(conn, row["run_id"], new.tags)
        (run,) = await runs_from_rows(conn, [row])
        return run, created

    async def get_run(self, run_id: uuid.UUID) -> Run:
        """See ``RunStore.get_run``."""
        (run,) = await self.get_runs([run_id])
        return run

    async def get_runs(self, run_ids: list[uuid.UUID]) -> list[Run]:
        """See ``RunStore.get_runs``."""
        with db_errors():
            async with self._pool.connection() as conn:
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(_RUNS_BY_ID, (run_ids,))
                rows = {row["run_id"]: row for row in await cur.fetchall()}
                check_all_found(run_ids, rows, "run")
                return await runs_from_rows(conn, [rows[r] for r in run_ids])

    async def require_runs(self, run_ids: list[uuid.UUID]) -> None:
        """See ``RunStore.require_runs``."""
        with db_errors():
            async with self._pool.connection() as conn:
                await require_ids(conn, RUNS, run_ids)

    async def finish_run(
        self, run_id: uuid.UUID, status: RunStatus, ended_at: datetime | None
    ) -> Run:
        """See ``RunStore.finish_run`` (the row lock serialises concurrent calls)."""
        with db_errors():
            async with self._pool.connection() as conn, conn.transaction():
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(_RUN_FOR_UPDATE, (run_id,))
                row = await cur.fetchone()
                if row is None:
                    raise not_found(f"run {run_id} not found")
                if check_transition(RunStatus(row["status"]), status):
                    await cur.execute(
                        _FINISH_RUN if ended_at is not None else _FINISH_RUN_NOW,
                        {"id": run_id, "status": int(status), "ended_at": ended_at},
                    )
                    row = await cur.fetchone()
                    assert row is not None
                (run,) = await runs_from_rows(conn, [row])
        return run

    async def log_params(self, run_id: uuid.UUID, params: dict[str, str]) -> None:
        """See ``RunStore.log_params``."""
        with db_errors():
            async with self._pool.connection() as conn, conn.transaction():
                await require_ids(conn, RUNS_FOR_KEY_SHARE, [run_id])
                await _add_params(conn, run_id, params)

    async def set_tags(
        self, run_id: uuid.UUID, tags: dict[str, str], delete_keys: list[str]
    ) -> dict[str, str]:
        """See ``RunStore.set_tags``."""
        with db_errors():
            async with self._pool.connection() as conn, conn.transaction():
                await require_ids(conn, RUNS_FOR_KEY_SHARE, [run_id])
                if delete_keys:
                    await conn.execute(_DELETE_TAGS, (run_id, delete_keys))
                await _upsert_tags(conn, run_id, tags)
                return await tags_of(conn, run_id)
