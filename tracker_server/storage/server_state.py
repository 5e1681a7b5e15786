"""Server-wide state in PostgreSQL: shared secrets and the readiness check."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from tracker_server.storage.migrate import load_migrations

_INSERT_SECRET = """
INSERT INTO server_secrets (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING
"""
_SELECT_SECRET = "SELECT value FROM server_secrets WHERE name = %s"
_APPLIED = "SELECT coalesce(max(version), 0) FROM schema_migrations"


async def shared_secret(pool: AsyncConnectionPool, name: str) -> bytes:
    """The secret called ``name``, created (32 random bytes) if it does not exist yet;
    servers starting at once all end up with the one that was inserted first."""
    async with pool.connection() as conn:
        await conn.execute(_INSERT_SECRET, (name, secrets.token_bytes(32)))
        row = await (await conn.execute(_SELECT_SECRET, (name,))).fetchone()
    assert row is not None  # inserted above, or by a concurrent server
    return bytes(row[0])


@dataclass(frozen=True)
class Readiness:
    """Whether the database answers and has every migration this server ships."""

    ready: bool
    detail: str
    schema_version: int | None = None


async def readiness(pool: AsyncConnectionPool, timeout_s: float = 2.0) -> Readiness:
    """Check the database: reachable within ``timeout_s``, migrations applied."""
    expected = load_migrations()[-1].version
    try:
        async with pool.connection(timeout=timeout_s) as conn:
            row = await (await conn.execute(_APPLIED)).fetchone()
    except Exception as exc:  # any failure means "not ready", with the reason
        return Readiness(False, f"database unreachable: {type(exc).__name__}")
    version = int(row[0]) if row else 0
    if version < expected:
        return Readiness(False, f"migrations pending: schema {version}, need {expected}",
                         version)
    return Readiness(True, "ok", version)
