"""What a benchmark runs against: a PostgreSQL and a tracker server process.

``Database`` is the embedded PostgreSQL in a temporary directory (or ``DATABASE_URL``),
migrated with the server's own migrations. ``ServerProcess`` runs ``python -m
tracker_server`` as a child process on 127.0.0.1 so its CPU time and peak RSS are its
own, not the harness's. ``CpuMeter`` reads CPU seconds of a process tree.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]  # no stubs in the test extra


def die_with_parent() -> None:
    """Linux: have the kernel send SIGTERM to this process when its parent dies, so a
    killed harness (timeout, Ctrl-C twice, OOM) leaves no server or client behind.
    Called at the start of spawned workers (for a subprocess, see
    :func:`python_dying_with_parent`); no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_EXEC_DYING_WITH_PARENT = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
except (OSError, AttributeError):
    pass
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


def python_dying_with_parent(*args: str) -> list[str]:
    """The argv of ``python ARGS`` for a child that gets SIGTERM when its parent dies.

    The started interpreter asks for the signal, then execs ``python ARGS`` (the request
    survives exec; same pid). Not a ``preexec_fn``: a Python callable there runs the
    at-fork hooks in the forked child, and OpenTelemetry's (registered by in-process
    servers of earlier tests) segfaulted in one in CI before the child could exec."""
    return [sys.executable, "-c", _EXEC_DYING_WITH_PARENT, *args]


def tree_rss(root: psutil.Process) -> int:
    """Resident memory of a process and its descendants, bytes: a server is its
    supervisor and its workers (``--workers``). A process that exits meanwhile counts 0."""
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so ``with`` blocks stop the server and the database."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Database:
    """The PostgreSQL a run uses: ``DATABASE_URL`` or an embedded one in a temp dir."""

    def __init__(self, url: str | None = None, keep: bool = False) -> None:
        self.url = url or os.environ.get("DATABASE_URL") or None
        self.keep = keep
        self.embedded: Any = None
        self.tmpdir: Path | None = None
        self.conninfo = ""

    def start(self) -> Database:
        """Start (embedded) or check (external) the database and apply migrations."""
        from tracker_server.storage.migrate import migrate

        if self.url:
            self.conninfo = self.url
        else:
            from tracker_server.storage.embedded import start_embedded

            self.tmpdir = Path(tempfile.mkdtemp(prefix="tracker-bench-"))
            self.conninfo, self.embedded = start_embedded(self.tmpdir)
        migrate(self.conninfo)
        return self

    @property
    def is_embedded(self) -> bool:
        """True when the harness owns the database (it may be wiped and vacuumed)."""
        return self.embedded is not None

    @property
    def postmaster_pid(self) -> int | None:
        """PID of the embedded postmaster (None for an external server)."""
        if self.embedded is None:
            return None
        return int(self.embedded.get_pid())

    def stop(self) -> None:
        """Stop the embedded server and delete its directory (unless ``keep``)."""
        if self.embedded is not None:
            with contextlib.suppress(Exception):
                self.embedded.cleanup()
            self.embedded = None
        if self.tmpdir is not None and not self.keep:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> Database:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_healthy(address: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None
                 ) -> None:
    """Block until the gRPC health service at ``address`` answers SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2

    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as ch:
        # types-grpcio-health-checking declares HealthStub without its methods.
        check = ch.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"tracker server exited with code {proc.returncode}")
            with contextlib.suppress(grpc.RpcError):
                resp = check(health_pb2.HealthCheckRequest(), timeout=1)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"tracker server at {address} not healthy after {timeout_s}s")
            time.sleep(0.1)


@dataclass
class ServerProcess:
    """``python -m tracker_server`` on 127.0.0.1:<free port>, against ``conninfo``."""

    conninfo: str
    env: dict[str, str] = field(default_factory=dict)
    """Extra TRACKER_* settings (e.g. TRACKER_FLUSH_INTERVAL_MS)."""
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def address(self) -> str:
        """host:port for clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """PID of the server process."""
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 60) -> ServerProcess:
        """Start the server and wait until it is healthy."""
        self.port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": self.conninfo,
            "TRACKER_LISTEN": self.address,
            "TRACKER_LOG_LEVEL": "warning",
            "TRACKER_HTTP_LISTEN": "",  # no dashboard unless a bench asks for it (self.env)
            **self.env,
        }
        err = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            python_dying_with_parent("-m", "tracker_server"), env=env,
            stdout=subprocess.DEVNULL, stderr=err,
        )
        wait_healthy(self.address, timeout_s, self.proc)
        return self

    def peak_rss_mb(self) -> float | None:
        """Peak resident set size so far (Linux VmHWM), in MiB."""
        if self.proc is None:
            return None
        return peak_rss_mb(self.proc.pid)

    def stop(self, timeout_s: float = 20) -> None:
        """SIGTERM (graceful: flushes), then SIGKILL after ``timeout_s``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def peak_rss_mb(pid: int) -> float | None:
    """High-water mark of a process's RSS in MiB (Linux), or its current RSS elsewhere."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    try:
        return float(psutil.Process(pid).memory_info().rss) / (1 << 20)
    except psutil.Error:
        return None


def tree_peak_rss_mb(pid: int) -> float | None:
    """Sum of the peak RSS of a process and its children (a supervisor's workers)."""
    try:
        procs = [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return None
    peaks = [peak_rss_mb(p) for p in procs]
    return sum(x for x in peaks if x is not None) if any(x is not None for x in peaks) else None


class CpuMeter:
    """CPU seconds a process (tree) spent between ``start()`` and ``stop()``.

    For a tree, only processes alive at both ends are counted per process, so
    short-lived children are missed; PostgreSQL backends of a connection pool live
    for the whole run, which is what matters here.
    """

    def __init__(self, pid: int | None, children: bool = False) -> None:
        self.pid = pid
        self.children = children
        self._start: dict[int, float] = {}
        self.seconds: float | None = None
        self.per_process: dict[int, float] = {}
        """CPU seconds of each process of the tree (children born meanwhile: all)."""
        self.pids: set[int] = set()
        """Every process of the tree seen at either reading."""

    def _snapshot(self) -> dict[int, float]:
        if self.pid is None:
            return {}
        out: dict[int, float] = {}
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)] if self.children else [root]
        except psutil.Error:
            return out
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                out[proc.pid] = t.user + t.system
        self.pids.update(out)
        return out

    def start(self) -> None:
        """Take the first reading."""
        self._start = self._snapshot()

    def stop(self) -> float | None:
        """Take the second reading; return the CPU seconds in between."""
        if self.pid is None:
            return None
        end = self._snapshot()
        self.per_process = {pid: v - self._start.get(pid, 0.0) for pid, v in end.items()}
        self.seconds = sum(self.per_process.values())
        return self.seconds


KTHREADD_PID = 2
"""Linux: the parent of every kernel thread (writeback, journal, I/O completion)."""


def _cpu_by_process() -> dict[tuple[int, float], tuple[float, bool]]:
    """(pid, create time) -> (CPU seconds, is a kernel thread) of every process."""
    out: dict[tuple[int, float], tuple[float, bool]] = {}
    for proc in psutil.process_iter(["pid", "ppid", "create_time", "cpu_times"]):
        info = proc.info
        t = info.get("cpu_times")
        if t is None:
            continue
        kernel = info["pid"] == KTHREADD_PID or info.get("ppid") == KTHREADD_PID
        out[(info["pid"], info.get("create_time") or 0.0)] = (t.user + t.system, kernel)
    return out


class MachineCpu:
    """Where the machine's CPU went between ``start()`` and ``stop()``: busy time in all,
    kernel threads (writeback and journal of the run's own writes land there), IRQ
    time, and processes the run did not start (``ours``: the run's process trees)."""

    def __init__(self) -> None:
        self._procs: dict[tuple[int, float], tuple[float, bool]] = {}
        self._times: Any = None

    def start(self) -> None:
        """First reading."""
        self._times = psutil.cpu_times()
        self._procs = _cpu_by_process()

    def stop(self, ours: set[int]) -> dict[str, float]:
        """Second reading: CPU seconds by kind (busy, kernel_threads, irq, others) and
        the idle time spent waiting for I/O (iowait)."""
        t0, t1 = self._times, psutil.cpu_times()
        busy = ((sum(t1) - t1.idle - getattr(t1, "iowait", 0.0))
                - (sum(t0) - t0.idle - getattr(t0, "iowait", 0.0)))
        irq = sum(getattr(t1, k, 0.0) - getattr(t0, k, 0.0) for k in ("irq", "softirq"))
        iowait = getattr(t1, "iowait", 0.0) - getattr(t0, "iowait", 0.0)
        kernel = others = 0.0
        for key, (cpu, is_kernel) in _cpu_by_process().items():
            spent = cpu - self._procs.get(key, (0.0, is_kernel))[0]
            if is_kernel:
                kernel += spent
            elif key[0] not in ours:
                others += spent
        return {"busy": busy, "kernel_threads": kernel, "irq": irq, "others": others,
                "iowait": iowait}


class CopySampler:
    """Samples PostgreSQL's sessions running ``COPY metric_chunks`` (the flushes in
    flight) every ``interval_s`` in a thread: the number of concurrent COPYs."""

    SQL = ("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
           "AND query LIKE 'COPY metric_chunks%' AND pid <> pg_backend_pid()")

    def __init__(self, conninfo: str | None, interval_s: float = 0.02) -> None:
        self.conninfo = conninfo
        self.interval_s = interval_s
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start sampling (no-op without a database)."""
        if self.conninfo:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="copy-sampler")
            self._thread.start()

    def _run(self) -> None:
        import psycopg

        assert self.conninfo is not None
        with contextlib.suppress(Exception), psycopg.connect(self.conninfo,
                                                             autocommit=True) as conn:
            while not self._stop.wait(self.interval_s):
                row = conn.execute(self.SQL).fetchone()
                self.samples.append(int(row[0]) if row else 0)

    def stop(self) -> dict[str, Any]:
        """Stop; the figures for the JSON."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        n = len(self.samples)
        busy = [x for x in self.samples if x]
        return {
            "concurrent_copies_max": max(self.samples, default=0) if n else None,
            "concurrent_copies_mean": sum(self.samples) / n if n else None,
            "concurrent_copies_mean_while_copying": (sum(busy) / len(busy)) if busy else None,
            "copy_busy_fraction": len(busy) / n if n else None,
            "copy_samples": n,
        }
