"""Artifact records in PostgreSQL (implements ``domain.ports.ArtifactStore``)."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from tracker_server.domain.artifacts import (
    Artifact,
    ArtifactFilter,
    ArtifactKind,
    NewArtifact,
    Verification,
    VerifyState,
)
from tracker_server.domain.errors import not_found
from tracker_server.domain.paging import KeysetPage
from tracker_server.storage.errors import db_errors, position_errors
from tracker_server.storage.existing import RUNS, RUNS_FOR_KEY_SHARE, require_ids

_COLUMNS = ("run_id, uri, step, step_key, kind, size_bytes, sha256, metadata, rank, "
            "created_at, verify_state, verify_detail, verified_at")

# A changed size or hash makes the last verification meaningless: it is reset.
_UPSERT = """
INSERT INTO run_artifacts AS a (run_id, uri, step, kind, size_bytes, sha256, metadata, rank,
                                created_at)
SELECT %(run_id)s, u, s, k, z, h, m, r, coalesce(t, now())
FROM unnest(%(uris)s::text[], %(steps)s::int8[], %(kinds)s::int2[], %(sizes)s::int8[],
            %(hashes)s::text[], %(metas)s::jsonb[], %(ranks)s::int4[],
            %(times)s::timestamptz[]) AS v(u, s, k, z, h, m, r, t)
ON CONFLICT (run_id, step_key, uri) DO UPDATE SET
    kind = excluded.kind, size_bytes = excluded.size_bytes, sha256 = excluded.sha256,
    metadata = excluded.metadata, rank = excluded.rank,
    verify_state = CASE WHEN a.size_bytes IS DISTINCT FROM excluded.size_bytes
                          OR a.sha256 <> excluded.sha256 THEN 0 ELSE a.verify_state END,
    verify_detail = CASE WHEN a.size_bytes IS DISTINCT FROM excluded.size_bytes
                          OR a.sha256 <> excluded.sha256 THEN '' ELSE a.verify_detail END,
    verified_at = CASE WHEN a.size_bytes IS DISTINCT FROM excluded.size_bytes
                        OR a.sha256 <> excluded.sha256 THEN NULL ELSE a.verified_at END
RETURNING (xmax = 0) AS inserted
"""

# (step_key, uri) > position: the keyset order is the primary key's.
_LIST = f"""
SELECT {_COLUMNS} FROM run_artifacts
WHERE run_id = %(run_id)s
  AND (cardinality(%(kinds)s::int2[]) = 0 OR kind = ANY(%(kinds)s::int2[]))
  AND (%(min_step)s::int8 IS NULL OR step >= %(min_step)s::int8)
  AND (%(max_step)s::int8 IS NULL OR step <= %(max_step)s::int8)
  AND (%(after_step)s::int8 IS NULL OR (step_key, uri) > (%(after_step)s::int8,
                                                          %(after_uri)s::text))
ORDER BY step_key, uri
LIMIT %(limit)s
"""

_VERIFY = """
UPDATE run_artifacts AS a SET verify_state = v.st, verify_detail = v.d, verified_at = now()
FROM unnest(%(uris)s::text[], %(steps)s::int8[], %(states)s::int2[], %(details)s::text[])
     AS v(u, s, st, d)
WHERE a.run_id = %(run_id)s AND a.uri = v.u
  AND a.step_key = coalesce(v.s, -9223372036854775808)
RETURNING a.uri, a.step
"""


def _artifact(row: dict[str, Any]) -> Artifact:
    return Artifact(
        run_id=row["run_id"], uri=row["uri"], kind=ArtifactKind(row["kind"]),
        step=row["step"], size_bytes=row["size_bytes"], sha256=row["sha256"],
        metadata=dict(row["metadata"]), rank=row["rank"], created_at=row["created_at"],
        verify_state=VerifyState(row["verify_state"]), verify_detail=row["verify_detail"],
        verified_at=row["verified_at"],
    )


class PgArtifactStore:
    """Artifact records of runs."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def log_artifacts(self, run_id: uuid.UUID, artifacts: list[NewArtifact]) -> int:
        """See ``ArtifactStore.log_artifacts``."""
        params = {
            "run_id": run_id,
            "uris": [a.uri for a in artifacts],
            "steps": [a.step for a in artifacts],
            "kinds": [int(a.kind) for a in artifacts],
            "sizes": [a.size_bytes for a in artifacts],
            "hashes": [a.sha256 for a in artifacts],
            "metas": [Jsonb(a.metadata) for a in artifacts],
            "ranks": [a.rank for a in artifacts],
            "times": [a.created_at for a in artifacts],
        }
        with db_errors():
            async with self._pool.connection() as conn, conn.transaction():
                await require_ids(conn, RUNS_FOR_KEY_SHARE, [run_id])
                cur = await conn.execute(_UPSERT, params)
                return sum(1 for (inserted,) in await cur.fetchall() if inserted)

    async def list_artifacts(
        self, run_id: uuid.UUID, where: ArtifactFilter, limit: int, after: list[Any] | None
    ) -> KeysetPage[Artifact]:
        """See ``ArtifactStore.list_artifacts``."""
        after_step, after_uri = after if after is not None else (None, None)
        with db_errors(), position_errors():
            async with self._pool.connection() as conn:
                await require_ids(conn, RUNS, [run_id])
                cur = conn.cursor(row_factory=dict_row)
                await cur.execute(_LIST, {
                    "run_id": run_id, "kinds": [int(k) for k in where.kinds],
                    "min_step": where.min_step, "max_step": where.max_step,
                    "after_step": after_step, "after_uri": after_uri, "limit": limit + 1,
                })
                rows = await cur.fetchall()
        items = [_artifact(r) for r in rows[:limit]]
        more = len(rows) > limit
        last = rows[limit - 1] if more else None
        return KeysetPage(items, [last["step_key"], last["uri"]] if last else None)

    async def record_verification(self, run_id: uuid.UUID, results: list[Verification]
                                  ) -> None:
        """See ``ArtifactStore.record_verification``."""
        with db_errors():
            async with self._pool.connection() as conn, conn.transaction():
                await require_ids(conn, RUNS_FOR_KEY_SHARE, [run_id])
                cur = await conn.execute(_VERIFY, {
                    "run_id": run_id, "uris": [r.uri for r in results],
                    "steps": [r.step for r in results],
                    "states": [int(r.state) for r in results],
                    "details": [r.detail for r in results],
                })
                found = {(u, s) for u, s in await cur.fetchall()}
                for r in results:
                    if (r.uri, r.step) not in found:
                        # Raising rolls the whole call back: all or nothing.
                        raise not_found(f"run {run_id} has no artifact at step "
                                        f"{'none' if r.step is None else r.step} "
                                        "with that uri")

