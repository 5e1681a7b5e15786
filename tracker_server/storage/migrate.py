"""Versioned SQL migrations, applied at start-up.

Files in ``migrations/`` are named ``NNNN_description.sql`` and applied in order, each
in its own transaction, and recorded in ``schema_migrations``. A session-level
advisory lock serialises concurrent start-ups: when several replicas start at once,
one applies the migrations and the others wait, then find nothing left to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

# Arbitrary constant, shared by every tracker server on the database.
_ADVISORY_LOCK_KEY = 7_433_611_592_001
_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One SQL file of the migrations package."""

    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """Return every migration shipped with the package, in version order."""
    found = []
    for entry in resources.files("tracker_server.storage.migrations").iterdir():
        match = _NAME_RE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return found


def applied_versions(conn: psycopg.Connection) -> list[int]:
    """Versions recorded in schema_migrations (empty before the first run)."""
    rows = conn.execute(
        "SELECT version FROM schema_migrations ORDER BY version"
        if _has_table(conn)
        else "SELECT NULL::int WHERE false"
    ).fetchall()
    return [r[0] for r in rows]


def _has_table(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    return bool(row and row[0])


def migrate(conninfo: str) -> list[int]:
    """Apply pending migrations; return the versions applied by this call."""
    applied_now: list[int] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = set(applied_versions(conn))
            for migration in load_migrations():
                if migration.version in done:
                    continue
                with conn.transaction():
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
                applied_now.append(migration.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK_KEY,))
    return applied_now
