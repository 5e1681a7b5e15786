"""deploy/: the Dockerfile agrees with the package, the SLURM scripts refuse to run
without a server, and ``tracker-server migrate`` (what the Kubernetes migration Job
runs) applies the schema on its own. Kubernetes: tests/test_k8s.py; SLURM for real:
tests/test_slurm.py."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tracker_server.config import Settings
from tracker_server.storage.migrate import load_migrations

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"


def test_scripts_require_a_server_address(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    for script in ("train.sbatch", "sync.sbatch"):
        proc = subprocess.run(["bash", str(DEPLOY / "slurm" / script), "train.py"],
                              env=env, capture_output=True, text=True, timeout=30)
        assert proc.returncode != 0 and "TRACKER_SERVER" in proc.stderr


def test_dockerfile_matches_the_package() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert 'ENTRYPOINT ["tracker-server"]' in text
    assert "tracker-server" in project["project"]["scripts"]
    for package in ("tracker_server", "tracker_client", "tracker_proto", "bench"):
        assert f"COPY {package} ./{package}" in text
    assert "USER tracker" in text  # the embedded PostgreSQL will not run as root
    assert f"TRACKER_LISTEN=0.0.0.0:{Settings().listen.rsplit(':', 1)[1]}" in text


@pytest.fixture
def empty_database(pg_admin_url: str) -> Iterator[str]:
    """A database without any table (``database_url`` is already migrated)."""
    name = f"empty_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield psycopg.conninfo.make_conninfo(pg_admin_url, dbname=name)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _migrate(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run([sys.executable, "-m", "tracker_server", "migrate", *args],
                          env={**clean, **env}, capture_output=True, text=True, timeout=120)


def test_migrate_subcommand_applies_the_schema_once(empty_database: str) -> None:
    versions = [m.version for m in load_migrations()]
    first = _migrate(DATABASE_URL=empty_database)
    assert first.returncode == 0, first.stderr[-2000:]
    assert f"applied migrations {', '.join(map(str, versions))}" in first.stdout
    again = _migrate("--database-url", empty_database)  # the flag works like the variable
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"nothing to apply; schema at version {versions[-1]}" in again.stdout
    with psycopg.connect(empty_database) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        assert [r[0] for r in rows] == versions
        assert conn.execute("SELECT to_regclass('metric_chunks') IS NOT NULL").fetchone() == (True,)


def test_migrate_subcommand_reports_an_unreachable_database() -> None:
    result = _migrate(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    assert result.returncode == 1
    assert "tracker-server migrate:" in result.stderr and "Traceback" not in result.stderr
