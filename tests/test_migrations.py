"""Migrations: idempotent, recorded, safe when several servers start at once."""

from __future__ import annotations

import threading
import uuid

import psycopg

from tracker_server.storage.migrate import load_migrations, migrate


def _fresh_db(admin_url: str) -> str:
    name = f"mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return psycopg.conninfo.make_conninfo(admin_url, dbname=name)


def _drop(admin_url: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_migrations_are_idempotent(pg_admin_url: str) -> None:
    url = _fresh_db(pg_admin_url)
    try:
        versions = [m.version for m in load_migrations()]
        assert migrate(url) == versions
        assert migrate(url) == []
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
        assert [r[0] for r in rows] == versions
    finally:
        _drop(pg_admin_url, url)


def test_concurrent_migrations_apply_once(pg_admin_url: str) -> None:
    url = _fresh_db(pg_admin_url)
    results: list[list[int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        try:
            barrier.wait()
            results.append(migrate(url))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=start) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        applied = [r for r in results if r]
        assert len(applied) == 1 and applied[0] == [m.version for m in load_migrations()]
        assert sorted(results, key=len)[:3] == [[], [], []]
    finally:
        _drop(pg_admin_url, url)


def test_chunk_columns_are_not_pglz_compressed(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        lz4 = conn.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        ).fetchone()
        rows = conn.execute(
            "SELECT attname, attstorage, attcompression FROM pg_attribute "
            "WHERE attrelid = 'metric_chunks'::regclass "
            "AND attname IN ('steps', 'values', 'wall_ns')"
        ).fetchall()
    assert len(rows) == 3
    for _, storage, compression in rows:
        if lz4 and lz4[0]:
            assert compression == "l"
        else:
            assert storage == "e"
