"""API keys in PostgreSQL: create, list, revoke (sync, for the CLI) and look up (async,
for the server's key cache; implements ``domain.ports.KeyStore``).

``last_used_at`` is written at most once a minute per key, from the cache's refresh,
never per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg_pool import AsyncConnectionPool

from tracker_server.domain.access import NewKey, Role
from tracker_server.domain.api_keys import KeyRecord

_INSERT_KEY = """
INSERT INTO api_keys (key_id, name, role, secret_sha256) VALUES (%s, %s, %s, %s)
RETURNING created_at
"""
_LIST_KEYS = """
SELECT key_id, name, role, created_at, revoked_at, last_used_at
FROM api_keys WHERE %s OR revoked_at IS NULL ORDER BY created_at, key_id
"""
# least() ignores NULL: the first revocation time stays. Not coalesce(): Citus refuses
# now() inside COALESCE/CASE in a write (storage/citus.py).
_REVOKE_KEY = """
UPDATE api_keys SET revoked_at = least(revoked_at, now()) WHERE key_id = %s
RETURNING revoked_at
"""
_LOOKUP_KEY = """
SELECT role, secret_sha256, revoked_at IS NOT NULL FROM api_keys WHERE key_id = %s
"""
_TOUCH_KEY = """
UPDATE api_keys SET last_used_at = now()
WHERE key_id = %s AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
"""
_COUNT_ACTIVE = "SELECT count(*) FROM api_keys WHERE revoked_at IS NULL"


@dataclass(frozen=True)
class ApiKeyInfo:
    """A key as ``keys list`` shows it (never its secret)."""

    key_id: str
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


def create_key(conn: psycopg.Connection, key: NewKey, name: str, role: Role) -> datetime:
    """Store a new key's hash; return its creation time."""
    row = conn.execute(_INSERT_KEY, (key.key_id, name, role.label, key.secret_hash)).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]  # psycopg rows are untyped tuples


def list_keys(conn: psycopg.Connection, include_revoked: bool = False) -> list[ApiKeyInfo]:
    """Keys in creation order (revoked ones too when asked)."""
    return [ApiKeyInfo(*row) for row in conn.execute(_LIST_KEYS, (include_revoked,))]


def revoke_key(conn: psycopg.Connection, key_id: str) -> datetime | None:
    """Revoke a key (idempotent); None when there is no such key."""
    row = conn.execute(_REVOKE_KEY, (key_id,)).fetchone()
    return row[0] if row else None


class PgKeyStore:
    """Async lookups for the server."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def lookup(self, key_id: str) -> KeyRecord | None:
        """The key's role, hash and revocation; records the use (at most once a minute)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(_LOOKUP_KEY, (key_id,))
            row = await cur.fetchone()
            if row is None:
                return None
            if not row[2]:
                await conn.execute(_TOUCH_KEY, (key_id,))
        return KeyRecord(Role.parse(row[0]), bytes(row[1]), bool(row[2]))

    async def active_count(self) -> int:
        """Keys not revoked."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(_COUNT_ACTIVE)
            row = await cur.fetchone()
        return int(row[0]) if row else 0
