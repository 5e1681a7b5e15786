"""Several server processes on one port: ``tracker-server --workers N``.

A Python process parses gRPC messages, validates and chunks on one core, so the server
runs N worker processes (``python -m tracker_server`` with ``TRACKER_WORKERS=1``), each a
complete server, all listening on the same port with SO_REUSEPORT: the kernel spreads
new connections over them, and clients need no change. The supervisor

- starts the embedded PostgreSQL once (unless ``DATABASE_URL``) and applies the
  migrations once, then hands every worker the database and its share of the memory
  budget (``memory_budget_bytes / N``) — the budget stays one for the whole server;
- holds the ports (gRPC, and the dashboard's HTTP port, which every worker serves the
  same way): it binds them first (SO_REUSEPORT, never listening), so ``:0`` becomes one
  real port for all workers and a restarted worker gets the same one back;
- keeps health honest: a worker reports NOT_SERVING until the supervisor has seen
  every worker up (SIGUSR1 turns it SERVING, SIGUSR2 back), so a pod is ready only
  with all its workers and becomes unready while a crashed one is restarted;
- restarts a worker that dies (with a back-off while one keeps dying); a worker that
  cannot start at all stops the whole server with its exit code;
- on SIGTERM or SIGINT forwards SIGTERM to every worker, waits until each has drained
  (streams stop being read, what was read is committed and acknowledged, streams end
  with UNAVAILABLE), then stops the embedded PostgreSQL and exits 0.

Workers write ``ready <port>`` to a pipe once they serve. Each worker also answers on a
Unix socket in a directory the supervisor makes (``TRACKER_WORKER_METRICS``) with its own
metrics, so whichever worker a scrape of ``GET /metrics`` lands on reports every worker
(``tracker_server/http/prometheus.py``). What lives in each worker
process and not across them (rate-limit buckets, the key cache, the series read cache)
is in ``docs/performance.md`` ("The ingest pipeline").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import structlog

from tracker_server.config import Settings, env_var, validate_security
from tracker_server.http.prometheus import PEERS_ENV, peers_value

log = structlog.get_logger(__name__)

WORKER_ENV = "TRACKER_WORKER_PIPE"
"""Set by the supervisor for a worker: ``<worker number>:<fd of its ready pipe>``."""

_RESTART_MIN_S = 0.5
_RESTART_MAX_S = 30.0
_STABLE_S = 30.0  # a worker that lived this long resets its restart back-off
DRAIN_MARGIN_S = 5.0
"""On SIGTERM the workers get ``shutdown_grace_s`` plus this (closing pools and
exporters) before they are killed; a pod's terminationGracePeriodSeconds covers both."""


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` too) as (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def reserve_port(listen: str) -> tuple[socket.socket, str]:
    """Bind ``listen`` with SO_REUSEPORT without listening; returns the socket (kept
    open for the supervisor's life) and ``host:port`` with the real port."""
    host, port = split_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host or "0.0.0.0", port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot bind TRACKER_LISTEN={listen}: {exc.strerror}") from exc
    real = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return sock, f"{shown}:{real}"


def worker_env(settings: Settings, index: int, workers: int, conninfo: str, listen: str,
               http_listen: str, pipe_fd: int, metrics_dir: Path | None = None
               ) -> dict[str, str]:
    """The environment of worker ``index``: every setting as resolved here (flags
    included), with the database, the shared port and the budget share filled in."""
    env = dict(os.environ)
    share = max(1, settings.memory_budget_bytes // workers)
    values: dict[str, Any] = {f.name: getattr(settings, f.name) for f in fields(Settings)}
    values.update(database_url=conninfo, listen=listen, http_listen=http_listen, workers=1,
                  memory_budget_bytes=share,
                  flush_bytes=min(settings.flush_bytes, share))
    for name, value in values.items():
        var = env_var(name)
        if value is None:
            env.pop(var, None)
        elif isinstance(value, bool):
            env[var] = "1" if value else "0"
        else:
            env[var] = str(value)
    env[WORKER_ENV] = f"{index}:{pipe_fd}"
    if metrics_dir is not None:
        env[PEERS_ENV] = peers_value(metrics_dir, workers)
    else:
        env.pop(PEERS_ENV, None)
    return env


@dataclass
class _Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    ready: bool = False
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = _RESTART_MIN_S
    watcher: asyncio.Task[None] | None = None


def _die_with_parent() -> None:
    """Linux: a worker dies with the supervisor. A killed supervisor is a killed server:
    nothing of its workers lingers on the port, and what they buffered was never
    acknowledged (the clients resend it)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


class Supervisor:
    """Starts, watches, restarts and drains the worker processes."""

    def __init__(self, settings: Settings, workers: int) -> None:
        self.settings = settings
        self.count = workers
        self.workers = [_Worker(i) for i in range(workers)]
        self.listen = settings.listen
        self.conninfo = ""
        self._stopping = asyncio.Event()
        self._all_up = asyncio.Event()
        self.http_listen = settings.http_listen
        self.failed = 0
        """Exit code of a worker that could not start (then the supervisor gives up)."""
        self._embedded: Any = None
        self._reserved: list[socket.socket] = []
        self.metrics_dir: Path | None = None
        """Where the workers' metrics sockets live (with HTTP and metrics on)."""

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit code."""
        from tracker_server.storage.embedded import start_embedded
        from tracker_server.storage.migrate import migrate

        validate_security(self.settings)
        sock, self.listen = reserve_port(self.settings.listen)
        self._reserved.append(sock)
        if self.settings.http_listen:  # the dashboard's port is shared the same way
            sock, self.http_listen = reserve_port(self.settings.http_listen)
            self._reserved.append(sock)
        if self.settings.http_listen and self.settings.metrics != "off":
            # Private to this server (0700): a scrape's peer requests never leave it.
            self.metrics_dir = Path(tempfile.mkdtemp(prefix="tracker-metrics-"))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        try:
            if self.settings.database_url:
                self.conninfo = self.settings.database_url
            else:
                self.conninfo, self._embedded = await asyncio.to_thread(
                    start_embedded, self.settings.data_dir)
            applied = await asyncio.to_thread(migrate, self.conninfo)
            if applied:
                log.info("migrations.applied", versions=applied)
            for w in self.workers:
                await self._spawn(w)
            waiting = asyncio.ensure_future(self._stopping.wait())
            up = asyncio.ensure_future(self._all_up.wait())
            await asyncio.wait([waiting, up], return_when=asyncio.FIRST_COMPLETED)
            up.cancel()
            if not self._stopping.is_set():
                print(self._listening_line(), flush=True)
                log.info("supervisor.started", listen=self.listen, workers=self.count,
                         lanes=self.settings.flush_lanes)
            await waiting
            log.info("server.stopping", workers=self.count)
            code = await self._drain()
            return self.failed or code
        finally:
            for w in self.workers:
                if w.proc is not None and w.proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        w.proc.kill()
            for sock in self._reserved:
                sock.close()
            if self.metrics_dir is not None:
                shutil.rmtree(self.metrics_dir, ignore_errors=True)
            if self._embedded is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(self._embedded.cleanup)

    def _listening_line(self) -> str:
        from tracker_server.server import dashboard_url

        http_port = split_listen(self.http_listen)[1] if self.http_listen else None
        dashboard = (f"; dashboard and REST API at {dashboard_url(self.settings, http_port)}"
                     if http_port is not None else "")
        return (f"tracker-server listening on {self.listen} (port "
                f"{split_listen(self.listen)[1]}, {self.count} workers){dashboard}")

    async def _spawn(self, w: _Worker) -> None:
        read_fd, write_fd = os.pipe()
        env = worker_env(self.settings, w.index, self.count, self.conninfo, self.listen,
                         self.http_listen, write_fd, self.metrics_dir)
        try:
            w.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tracker_server", env=env, pass_fds=(write_fd,),
                stdout=asyncio.subprocess.DEVNULL, preexec_fn=_die_with_parent)
        finally:
            os.close(write_fd)
        w.ready = False
        w.started_at = time.monotonic()
        w.watcher = asyncio.ensure_future(self._watch(w, read_fd))

    async def _watch(self, w: _Worker, read_fd: int) -> None:
        """Follow one worker: its ready line, then its exit (restart it)."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0))
        assert w.proc is not None
        try:
            line = await reader.readline()
            if line.startswith(b"ready"):
                w.ready = True
                log.info("supervisor.worker_ready", worker=w.index, pid=w.proc.pid)
                self._update_health()
            code = await w.proc.wait()
        finally:
            transport.close()
        was_ready, w.ready = w.ready, False
        if self._stopping.is_set():
            return
        if not was_ready and not self._all_up.is_set():
            # It never came up at start-up: a setting or the environment is wrong
            # (its own error is on stderr); restarting would only repeat it.
            log.error("supervisor.worker_failed_to_start", worker=w.index, code=code)
            self.failed = code or 1
            self._stopping.set()
            return
        lived = time.monotonic() - w.started_at
        if lived > _STABLE_S:
            w.backoff_s = _RESTART_MIN_S
        delay = w.backoff_s
        w.backoff_s = min(_RESTART_MAX_S, w.backoff_s * 2)  # while it keeps dying
        log.warning("supervisor.worker_exited", worker=w.index, code=code,
                    lived_s=round(lived, 1), restart_in_s=delay)
        self._update_health()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)
        if not self._stopping.is_set():
            w.restarts += 1
            await self._spawn(w)

    def _update_health(self) -> None:
        """Every worker SERVING when all are up, NOT_SERVING otherwise."""
        all_up = all(w.ready for w in self.workers)
        sig = signal.SIGUSR1 if all_up else signal.SIGUSR2
        for w in self.workers:
            if w.ready and w.proc is not None and w.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(sig)
        if all_up:
            self._all_up.set()

    async def _drain(self) -> int:
        """SIGTERM every worker, wait for each to drain and exit."""
        procs = [w.proc for w in self.workers if w.proc is not None]
        for p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
        limit = self.settings.shutdown_grace_s + DRAIN_MARGIN_S
        try:
            codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), limit)
        except TimeoutError:
            log.warning("supervisor.drain_timeout", grace_s=self.settings.shutdown_grace_s)
            for p in procs:
                if p.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
            return 1
        for w in self.workers:
            if w.watcher is not None:
                w.watcher.cancel()
        bad = [c for c in codes if c != 0]
        if bad:
            log.warning("supervisor.worker_exit_codes", codes=codes)
        return 0 if not bad else 1


def worker_identity() -> tuple[int, int] | None:
    """(worker number, ready-pipe fd) when this process runs as a supervised worker."""
    raw = os.environ.get(WORKER_ENV)
    if not raw:
        return None
    index, fd = raw.split(":", 1)
    return int(index), int(fd)


def report_ready(fd: int, port: int) -> None:
    """Tell the supervisor this worker serves."""
    with contextlib.suppress(OSError):
        os.write(fd, f"ready {port}\n".encode())
        os.close(fd)

