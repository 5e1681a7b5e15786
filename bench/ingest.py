"""``python -m bench ingest``: end-to-end ingest throughput against the COPY ceiling.

One run:

1. starts PostgreSQL (embedded in a temp dir, or ``DATABASE_URL``) and the tracker
   server as its own process on 127.0.0.1 (or targets ``--server ADDR``);
2. starts ``--streams`` client processes (spawn); each creates a run, opens a stream
   and, once all are open, sends the workload (``--keys`` metrics per step, increasing
   steps, float values, wall times) through ``tracker_client`` (``--transport client``)
   or the raw wire protocol (``--transport raw``, also times every batch to its ack);
3. counts in PostgreSQL that every sent point was committed exactly once;
4. measures the ceiling in the same database: the same points written by one process
   with the server's own chunking, encoder and binary COPY (``bench/ceiling.py``);
5. prints a table and, with ``--json PATH``, writes the figures.

``--profile lowfreq`` is the cluster-wide pattern instead: many runs (default 500)
logging a few keys once a second; it reports server CPU per 1k points/s, chunks per
point and bytes per point before and after compaction.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import psutil  # type: ignore[import-untyped]  # no stubs in the test extra
import psycopg

from bench import ceiling as ceiling_mod
from bench.environment import (
    CopySampler,
    CpuMeter,
    Database,
    MachineCpu,
    ServerProcess,
    exit_on_sigterm,
    tree_peak_rss_mb,
)
from bench.report import Progress, si, table, write_json
from bench.verify import verify
from bench.workers import WorkerSpec, worker_main
from bench.workload import Workload


@dataclass(frozen=True)
class IngestParams:
    """Parameters of one end-to-end run (all land in the JSON)."""

    streams: int = 4
    keys: int = 20
    batch_points: int = 2000
    duration_s: float | None = 10.0
    """Send for this long (ignored when ``points`` is set)."""
    points: int | None = None
    """Total points over all streams (rounded to whole steps per stream)."""
    rate_points_s: float | None = None
    """Total offered load over all streams; None: as fast as possible."""
    transport: str = "client"
    api: str = "log"
    procs: int | None = None
    """Client processes; default one per stream (at most 8 with many streams)."""
    window_batches: int | None = None
    """Raw transport: unacknowledged batches per stream (default ~500k points)."""
    stagger_s: float = 0.0
    profile: str = "default"
    verify_mode: str = "ranges"
    ceiling: bool = True
    ceiling_max_points: int = 10_000_000
    ceiling_connections: int | None = None
    """COPY connections of the ceiling; None: the server's workers x lanes."""
    ceiling_repeat: int = 3
    """Passes of the ceiling; the fastest is reported (one pass is about a second)."""
    seed: int = 0

    @property
    def workload(self) -> Workload:
        """The per-stream workload."""
        return Workload(keys=self.keys, batch_points=self.batch_points, seed=self.seed)


LOWFREQ: dict[str, Any] = dict(
    streams=500, keys=10, batch_points=10, duration_s=30.0, rate_points_s=5000.0,
    transport="raw", procs=4, stagger_s=1.0, profile="lowfreq", ceiling=False)
"""500 runs x 10 keys x 1 step/s: the many-small-streams pattern of a whole cluster."""


@dataclass
class Harness:
    """A database and a server, started once and used by one or more runs."""

    database_url: str | None = None
    server_address: str | None = None
    server_pid: int | None = None
    server_env: dict[str, str] = field(default_factory=dict)
    keep: bool = False
    py_spy: str | None = None
    """Record the server with py-spy during the timed window into this file
    (.svg flame graph, .txt collapsed stacks, .json speedscope)."""
    db: Database | None = None
    server: ServerProcess | None = None
    log_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-logs-")))

    def start(self) -> Harness:
        """Start what is not given: the database, then the server process."""
        if self.server_address and not (self.database_url or os.environ.get("DATABASE_URL")):
            print("note: --server without DATABASE_URL: no exactly-once check, no ceiling",
                  file=sys.stderr)
        else:
            self.db = Database(self.database_url, keep=self.keep).start()
        if not self.server_address:
            assert self.db is not None
            self.server = ServerProcess(self.db.conninfo, dict(self.server_env),
                                        self.log_dir / "server.log").start()
            self.server_pid = self.server.pid
        return self

    @property
    def address(self) -> str:
        """Where clients connect."""
        if self.server is not None:
            return self.server.address
        assert self.server_address
        return self.server_address

    @property
    def conninfo(self) -> str | None:
        """Database of the server (None: unknown, external server)."""
        return self.db.conninfo if self.db else None

    @property
    def workers(self) -> int | None:
        """Server processes of the spawned server (None: an external one)."""
        if self.server is None:
            return None
        from tracker_server.config import Settings, worker_count

        raw = self.server_env.get("TRACKER_WORKERS")
        return worker_count(Settings(workers=int(raw) if raw else 0))

    @property
    def lanes(self) -> int | None:
        """Flush lanes per server process of the spawned server."""
        if self.server is None:
            return None
        from tracker_server.config import Settings

        raw = self.server_env.get("TRACKER_FLUSH_LANES")
        return int(raw) if raw else Settings().flush_lanes

    @property
    def concurrent_copies(self) -> int:
        """The most COPYs the server runs at once: workers x lanes (1 if unknown)."""
        return (self.workers or 1) * (self.lanes or 1)

    def server_log_tail(self, lines: int = 30) -> str:
        """Last lines of the server's stderr."""
        path = self.log_dir / "server.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server (graceful) and the database."""
        if self.server is not None:
            self.server.stop()
        if self.db is not None:
            self.db.stop()

    def __enter__(self) -> Harness:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _split(items: list[int], parts: int) -> list[list[int]]:
    return [items[i::parts] for i in range(parts) if items[i::parts]]


def checkpoint(conninfo: str | None, truncate: bool = False) -> None:
    """Start a phase from the same database state: CHECKPOINT (so a checkpoint forced
    by the previous phase's WAL does not land in this one) and, on the harness's own
    database only, an empty metric_chunks table."""
    if not conninfo:
        return
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if truncate:
            conn.execute("TRUNCATE metric_chunks")
        with contextlib.suppress(psycopg.Error):  # needs superuser or pg_checkpoint
            conn.execute("CHECKPOINT")


def _relation_bytes(conninfo: str | None) -> int | None:
    if not conninfo:
        return None
    with psycopg.connect(conninfo) as conn:
        return ceiling_mod.relation_bytes(conn)


def run_e2e(h: Harness, p: IngestParams, show_progress: bool = True,
            label: str = "ingest") -> dict[str, Any]:
    """One end-to-end run against a started harness; returns the figures."""
    ctx = mp.get_context("spawn")
    wl = p.workload
    n = p.streams
    nprocs = p.procs or (n if n <= 8 else 8)
    groups = _split(list(range(n)), nprocs)
    tag = uuid.uuid4().hex[:8]
    steps = wl.steps_for(p.points // n) if p.points else None
    duration = None if p.points else p.duration_s
    window = p.window_batches or max(4, 500_000 // wl.points_per_batch)
    checkpoint(h.conninfo)
    progress = ctx.Array("q", n, lock=False)
    ready = ctx.Semaphore(0)
    go = ctx.Event()
    t0 = ctx.Value("d", 0.0, lock=False)
    results: Any = ctx.Queue()
    procs = []
    for g in groups:
        spec = WorkerSpec(
            address=h.address, experiment=f"bench-{p.profile}",
            run_keys=[f"bench-{tag}-{i}" for i in g], streams=g, workload=wl,
            transport=p.transport, api=p.api, steps=steps, duration_s=duration,
            points_per_s=p.rate_points_s / n if p.rate_points_s else None,
            window_batches=window, stagger_s=p.stagger_s,
        )
        proc = ctx.Process(target=worker_main, args=(spec, progress, ready, go, t0, results),
                           daemon=True)
        proc.start()
        procs.append(proc)
    try:
        return _drive(h, p, procs, progress, ready, go, t0, results, steps, duration,
                      show_progress, label)
    finally:
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()


def _drive(h: Harness, p: IngestParams, procs: list[Any], progress: Any, ready: Any,
           go: Any, t0: Any, results: Any, steps: int | None, duration: float | None,
           show_progress: bool, label: str) -> dict[str, Any]:
    wl = p.workload
    got: list[dict[str, Any]] = []
    # Wait until every stream is open (runs created, Opened received).
    deadline = time.monotonic() + 120
    for _ in procs:
        while not ready.acquire(timeout=0.5):
            if time.monotonic() > deadline or any(not pr.is_alive() for pr in procs):
                detail = []
                with contextlib.suppress(Exception):
                    while True:
                        detail.append(str(results.get(timeout=0.5).get("error")))
                codes = [pr.exitcode for pr in procs]
                raise RuntimeError(f"client processes did not start (exit codes {codes}):\n"
                                   + "\n".join(detail) + "\nserver log:\n"
                                   + h.server_log_tail())
    disk_before = _relation_bytes(h.conninfo)
    server_cpu = CpuMeter(h.server_pid, children=True)  # the supervisor and its workers
    pg_cpu = CpuMeter(h.db.postmaster_pid if h.db else None, children=True)
    client_cpu = [CpuMeter(pr.pid) for pr in procs]
    for m in (server_cpu, pg_cpu, *client_cpu):
        m.start()
    connections = _connections_per_process(h)
    machine = MachineCpu()
    machine.start()
    copies = CopySampler(h.conninfo)
    copies.start()
    start = time.monotonic()
    t0.value = start
    go.set()
    spy = _start_py_spy(h, duration or 10.0)
    total = steps * wl.keys * p.streams if steps else None
    bar = Progress(label, total) if show_progress else None
    limit = (duration or 0) + 300 + (steps or 0) * wl.keys * p.streams / 50_000
    while len(got) < len(procs):
        with contextlib.suppress(Exception):
            got.append(results.get(timeout=0.25))
        if bar is not None:
            done = float(sum(progress[:]))
            frac = None if total else min(1.0, (time.monotonic() - start) / (duration or 1))
            bar.update(done, frac)
        if time.monotonic() - start > limit:
            raise RuntimeError("bench run did not finish in time:\n" + h.server_log_tail())
        if len(got) < len(procs) and not any(pr.is_alive() for pr in procs):
            with contextlib.suppress(Exception):
                while True:
                    got.append(results.get(timeout=1))
            break
    server_cpu_s = server_cpu.stop()
    pg_cpu_s = pg_cpu.stop()
    for m in client_cpu:
        m.stop()
    # Each client process reports its own CPU since the start signal and that of its
    # reaped children (the client transport's sender processes, mostly born mid-run).
    sender_cpu_s = sum(float(g.get("children_cpu_s") or 0.0) for g in got)
    client_cpu_s = sum(float(g.get("run_cpu_s") or 0.0) for g in got) + sender_cpu_s
    ours = {os.getpid(), *server_cpu.pids, *pg_cpu.pids,
            *(p for m in client_cpu for p in m.pids)}
    with contextlib.suppress(psutil.Error):
        ours.update(c.pid for c in psutil.Process().children(recursive=True))
    machine_s = machine.stop(ours)
    copy_figures = copies.stop()
    if bar is not None:
        bar.close()
    if spy is not None:
        spy.wait(60)
    errors = [g["error"] for g in got if "error" in g]
    if errors or len(got) < len(procs):
        raise RuntimeError("client process failed:\n" + "\n".join(errors)
                           + "\nserver log:\n" + h.server_log_tail())
    streams = [r for g in got for r in g["results"]]
    fig = _figures(h, p, streams, start, server_cpu_s, pg_cpu_s, client_cpu_s, disk_before)
    window = time.monotonic() - start
    fig.update(copy_figures)
    fig["server_processes"] = _server_processes(h, server_cpu, window)
    for entry in fig["server_processes"]:
        entry["client_connections"] = connections.get(entry["pid"])
    fig["client_processes_cpu_s"] = [float(g.get("run_cpu_s") or 0.0) for g in got]
    fig["client_sender_processes_cpu_s"] = sender_cpu_s
    # CPU used by processes this run did not start (other jobs on a shared box make
    # every figure of this run lower; the JSON says how much), and apart from them the
    # kernel's own threads (writeback and journal of this run's PostgreSQL writes).
    fig["machine_busy_cores"] = machine_s["busy"] / window
    fig["other_processes_cores"] = machine_s["others"] / window
    fig["kernel_threads_cores"] = machine_s["kernel_threads"] / window
    fig["irq_cores"] = machine_s["irq"] / window
    fig["iowait_cores"] = machine_s["iowait"] / window
    # Busy time no process alive at both readings accounts for: processes that started
    # and ended within the run (another job's tests and their database sessions).
    attributed = ((server_cpu_s or 0.0) + (pg_cpu_s or 0.0) + client_cpu_s
                  + machine_s["others"] + machine_s["kernel_threads"] + machine_s["irq"])
    fig["unattributed_cores"] = max(0.0, machine_s["busy"] - attributed) / window
    return fig


def _connections_per_process(h: Harness) -> dict[int, int]:
    """Client connections each server process holds on the gRPC port as the clock
    starts: with several workers the kernel spreads connections by a hash, so a few
    streams can land unevenly (4 streams on 2 workers: all on one in 1 run of 8)."""
    if h.server is None or not h.server_pid:
        return {}
    out: dict[int, int] = {}
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(h.server_pid)
        for proc in [root, *root.children()]:
            with contextlib.suppress(psutil.Error):
                out[proc.pid] = sum(1 for c in proc.net_connections("tcp")
                                    if c.status == psutil.CONN_ESTABLISHED
                                    and c.laddr.port == h.server.port)
    return out


def _server_processes(h: Harness, meter: CpuMeter, window: float) -> list[dict[str, Any]]:
    """CPU of each server process: the supervisor (if any) and each worker."""
    out = []
    for pid, cpu_s in sorted(meter.per_process.items()):
        role = "supervisor" if pid == h.server_pid and len(meter.per_process) > 1 else (
            "server" if pid == h.server_pid else "worker")
        out.append({"pid": pid, "role": role, "cpu_s": cpu_s, "cores": cpu_s / window})
    return out


def _py_spy() -> str:
    """py-spy from this interpreter's environment, else from PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else "py-spy"


def _start_py_spy(h: Harness, seconds: float) -> subprocess.Popen[bytes] | None:
    """py-spy record of the server process, if asked for (pip install py-spy)."""
    if not h.py_spy or not h.server_pid:
        return None
    fmt = {".txt": "raw", ".json": "speedscope"}.get(Path(h.py_spy).suffix, "flamegraph")
    return subprocess.Popen(
        # --subprocesses: the server process is a supervisor; the workers do the work.
        [_py_spy(), "record", "-p", str(h.server_pid), "-d", str(max(1, int(seconds))),
         "-r", "100", "--threads", "--subprocesses", "-f", fmt, "-o", h.py_spy],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _figures(h: Harness, p: IngestParams, streams: list[dict[str, Any]], start: float,
             server_cpu_s: float | None, pg_cpu_s: float | None, client_cpu_s: float,
             disk_before: int | None) -> dict[str, Any]:
    wl = p.workload
    sent = sum(s["points_sent"] for s in streams)
    acked = sum(s["points_acked"] for s in streams)
    end = max((s["t_last_ack"] for s in streams), default=start)
    elapsed = max(end - start, 1e-9)
    ack = np.array([x for s in streams for x in s["ack_ms"]], dtype=np.float64)
    stream_errors = [s["error"] for s in streams if s.get("error")]
    out: dict[str, Any] = {
        "points_sent": sent,
        "points_acked": acked,
        "elapsed_s": elapsed,
        "ack_p50_ms": float(np.percentile(ack, 50)) if ack.size else None,
        "ack_p90_ms": float(np.percentile(ack, 90)) if ack.size else None,
        "ack_p99_ms": float(np.percentile(ack, 99)) if ack.size else None,
        "ack_max_ms": float(ack.max()) if ack.size else None,
        "ack_samples": int(ack.size),
        # client transport: sampled age of the oldest unacknowledged batch (10 Hz).
        "client_lag_p50_ms": _pct([x for s in streams for x in s.get("lag_ms", [])], 50),
        "client_lag_p99_ms": _pct([x for s in streams for x in s.get("lag_ms", [])], 99),
        "batches_sent": sum(s["batches_sent"] for s in streams),
        "batches_rejected": sum(s["batches_rejected"] for s in streams),
        "slow_downs": sum(s["slow_downs"] for s in streams),
        "stream_errors": stream_errors[:10],
        "server_cpu_s": server_cpu_s,
        "postgres_cpu_s": pg_cpu_s,
        "clients_cpu_s": client_cpu_s,
        "server_peak_rss_mb": tree_peak_rss_mb(h.server_pid) if h.server_pid else None,
    }
    committed = acked
    if h.conninfo:
        expected = {s["run_id"]: s["points_sent"] // wl.keys for s in streams}
        v = verify(h.conninfo, expected, wl.keys, p.verify_mode)
        out.update(v.as_dict())
        committed = v.points_committed
        disk_after = _relation_bytes(h.conninfo)
        if disk_before is not None and disk_after is not None and committed:
            out["disk_bytes_per_point"] = (disk_after - disk_before) / committed
            out["chunks_per_point"] = v.chunks / committed
            out["points_per_chunk"] = committed / v.chunks if v.chunks else None
    else:
        out.update(points_committed=None, exactly_once=None, disk_bytes_per_point=None)
    out["e2e_points_per_s"] = committed / elapsed
    out["offered_points_per_s"] = p.rate_points_s
    if server_cpu_s is not None and committed:
        rate_k = committed / elapsed / 1000
        out["server_cpu_cores"] = server_cpu_s / elapsed
        out["server_cpu_us_per_point"] = server_cpu_s / committed * 1e6
        # Cores the server needs per 1,000 points/s of sustained load.
        out["server_cpu_cores_per_1k_points_s"] = server_cpu_s / elapsed / rate_k
    if pg_cpu_s is not None:
        out["postgres_cpu_cores"] = pg_cpu_s / elapsed
    out["clients_cpu_cores"] = client_cpu_s / elapsed
    return out


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values), q)) if values else None


def run_ceiling(h: Harness, p: IngestParams, points_sent: int,
                show_progress: bool = True) -> dict[str, Any]:
    """The ceiling for the same points (capped at ``ceiling_max_points``)."""
    if not h.conninfo:
        return {"ceiling_points_per_s": None}
    wl = p.workload
    pts = min(points_sent, p.ceiling_max_points)
    steps = wl.steps_for(pts // p.streams)
    checkpoint(h.conninfo)
    bar = Progress("ceiling", steps * wl.keys * p.streams) if show_progress else None
    res = ceiling_mod.measure(h.conninfo, wl, p.streams, steps,
                              progress=bar.update if bar else None,
                              connections=p.ceiling_connections or h.concurrent_copies,
                              repeat=p.ceiling_repeat)
    if bar is not None:
        bar.close()
    return res.as_dict()


def compaction_figures(h: Harness, run_ids: list[str], wait_s: float,
                       run_compactor: bool = True, timeout_s: float = 60.0) -> dict[str, Any]:
    """Chunks and bytes of ``run_ids`` after compaction.

    With ``run_compactor`` the harness runs the server's own compactor
    (``tracker_server.storage.compactor.compact_once``, rounds until nothing is left to
    merge or ``timeout_s`` is spent) and times it; otherwise it gives a background
    compactor ``wait_s`` seconds.
    Bytes are table + TOAST + index size after VACUUM FULL (only on the harness's own
    embedded database, where the profile's runs are the only data), so space freed by
    merged chunks is counted as freed; ``disk_bytes_per_point_live_before`` is the same
    measure before compaction.
    """
    if not h.conninfo:
        return {}
    sql = "SELECT count(*), coalesce(sum(n), 0) FROM metric_chunks WHERE run_id = ANY(%s)"
    own = h.db is not None and h.db.is_embedded
    out: dict[str, Any] = {}
    with psycopg.connect(h.conninfo, autocommit=True) as conn:
        chunks, points = conn.execute(sql, (run_ids,)).fetchone()  # type: ignore[misc]
        if own:
            conn.execute("VACUUM FULL metric_chunks")
            out["disk_bytes_per_point_live_before"] = (
                ceiling_mod.relation_bytes(conn) / points if points else None)
    if run_compactor:
        t = time.perf_counter()
        rounds, complete = asyncio.run(_compact(h.conninfo, timeout_s))
        out["compaction_s"] = time.perf_counter() - t
        out["compaction_rounds"] = rounds
        out["compaction_complete"] = complete
    else:
        with psycopg.connect(h.conninfo, autocommit=True) as conn:
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                time.sleep(2)
                now, points = conn.execute(sql, (run_ids,)).fetchone()  # type: ignore[misc]
                if now == chunks and now < points:
                    break  # a compactor ran and is done with these runs
                chunks = now
    with psycopg.connect(h.conninfo, autocommit=True) as conn:
        chunks, points = conn.execute(sql, (run_ids,)).fetchone()  # type: ignore[misc]
        out["chunks_after_compaction"] = int(chunks)
        out["chunks_per_point_after_compaction"] = chunks / points if points else None
        if own:
            conn.execute("VACUUM FULL metric_chunks")
            total = ceiling_mod.relation_bytes(conn)
            out["disk_bytes_per_point_after_compaction"] = total / points if points else None
    return out


async def _compact(conninfo: str, timeout_s: float) -> tuple[int, bool]:
    """Rounds of the server's compactor (its default round size) until nothing is left
    to merge or ``timeout_s`` is spent; a round cut by the timeout rolls back.
    Returns (rounds committed, complete)."""
    from psycopg_pool import AsyncConnectionPool

    from tracker_server.config import Settings
    from tracker_server.storage.compactor import compact_once

    max_series = Settings().compact_max_series
    deadline = time.monotonic() + timeout_s
    rounds = 0
    async with AsyncConnectionPool(conninfo, min_size=1, max_size=2, open=False) as pool:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return rounds, False
            try:
                result = await asyncio.wait_for(compact_once(pool, max_series), left)
            except TimeoutError:
                return rounds, False
            if result.merged <= 0:
                return rounds, True
            rounds += 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Flags of ``bench ingest``."""
    p = argparse.ArgumentParser(prog="python -m bench ingest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=["default", "lowfreq"], default="default",
                   help="lowfreq: 500 runs x 10 keys x 1 point/s (flags below override)")
    p.add_argument("--streams", type=int, help="client streams (default 4; lowfreq 500)")
    p.add_argument("--keys", type=int, help="metrics per step (default 20)")
    p.add_argument("--batch-points", type=int, help="points per batch (default 2000)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--duration", type=float, help="seconds of sending (default 10)")
    g.add_argument("--points", type=int, help="total points instead of a duration")
    p.add_argument("--rate", type=float, help="offered load, points/s over all streams "
                   "(default: as fast as possible)")
    p.add_argument("--transport", choices=["client", "raw"],
                   help="client: tracker_client (default); raw: wire protocol, per-batch "
                   "ack latency")
    p.add_argument("--api", choices=["log", "series"], default="log",
                   help="client transport: Run.log per step, or Run.log_series per key")
    p.add_argument("--procs", type=int, help="client processes (default: one per stream)")
    p.add_argument("--window-batches", type=int,
                   help="raw: unacknowledged batches per stream (default ~500k points)")
    p.add_argument("--server", help="target a running server host:port instead of starting one")
    p.add_argument("--server-pid", type=int, help="PID of --server, for its CPU and RSS")
    p.add_argument("--database-url", help="PostgreSQL (default DATABASE_URL, else embedded)")
    p.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra server setting, e.g. TRACKER_FLUSH_INTERVAL_MS=50")
    p.add_argument("--workers", type=int, help="server processes (TRACKER_WORKERS; default: "
                   "the server's, one per core)")
    p.add_argument("--lanes", type=int, help="flush lanes per server process "
                   "(TRACKER_FLUSH_LANES; default: the server's)")
    p.add_argument("--no-ceiling", action="store_true", help="skip the ceiling")
    p.add_argument("--ceiling-connections", type=int,
                   help="COPY connections of the ceiling (default: the server's workers x "
                   "lanes, the most COPYs it runs at once; 1 with --server)")
    p.add_argument("--ceiling-repeat", type=int, default=3,
                   help="passes of the ceiling over the same points; the fastest is "
                        "reported (default 3)")
    p.add_argument("--ceiling-max-points", type=int, default=10_000_000,
                   help="points the ceiling writes at most (generated in memory first)")
    p.add_argument("--verify", choices=["ranges", "full"], default="ranges",
                   help="full also unnests every point to look for duplicates")
    p.add_argument("--compact", action="store_true",
                   help="after the run, compact and report chunks and bytes per point "
                   "before and after (always with --profile lowfreq)")
    p.add_argument("--compaction-wait", type=float, default=0.0,
                   help="lowfreq with --server: seconds to wait for its background "
                   "compactor before the 'after' figures (otherwise the harness runs "
                   "the server's compactor itself)")
    p.add_argument("--compaction-timeout", type=float, default=60.0,
                   help="lowfreq: most seconds the harness spends compacting (default 60)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--py-spy", metavar="PATH", help="profile the server with py-spy while "
                   "the clients send (.svg flame graph, .txt collapsed stacks)")
    p.add_argument("--json", metavar="PATH", help="write the figures to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def params_from(args: argparse.Namespace) -> IngestParams:
    """IngestParams from flags (profile defaults first, then explicit flags)."""
    base = IngestParams()
    if args.profile == "lowfreq":
        base = replace(base, **LOWFREQ)
    over: dict[str, Any] = {}
    for flag, name in (("streams", "streams"), ("keys", "keys"),
                       ("batch_points", "batch_points"), ("rate", "rate_points_s"),
                       ("transport", "transport"), ("procs", "procs"),
                       ("window_batches", "window_batches")):
        if getattr(args, flag) is not None:
            over[name] = getattr(args, flag)
    if args.points is not None:
        over.update(points=args.points, duration_s=None)
    elif args.duration is not None:
        over["duration_s"] = args.duration
    if args.no_ceiling:
        over["ceiling"] = False
    over.update(api=args.api, verify_mode=args.verify, seed=args.seed,
                ceiling_max_points=args.ceiling_max_points,
                ceiling_connections=args.ceiling_connections,
                ceiling_repeat=args.ceiling_repeat)
    return replace(base, **over)


def _git() -> dict[str, Any]:
    """Commit of the code measured, and whether server/client files differ from it."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = git("status", "--porcelain", "--", "tracker_server", "tracker_client")
    return {"commit": git("rev-parse", "--short", "HEAD") or None,
            "server_client_files_modified": len(dirty.splitlines()) if dirty else 0}


def environment_info() -> dict[str, Any]:
    """Machine facts for the JSON."""
    import psutil

    return {**_git(), "cpus": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "loadavg_1m_at_end": os.getloadavg()[0],
            "python": platform.python_version(), "platform": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    """``python -m bench ingest``."""
    exit_on_sigterm()
    args = parse_args(argv)
    p = params_from(args)
    env = dict(kv.split("=", 1) for kv in args.server_env)
    if args.workers is not None:
        env["TRACKER_WORKERS"] = str(args.workers)
    if args.lanes is not None:
        env["TRACKER_FLUSH_LANES"] = str(args.lanes)
    compact = p.profile == "lowfreq" or args.compact
    if compact:
        # The harness compacts after the run (compact_all), so "before" is as ingested.
        env.setdefault("TRACKER_COMPACT_INTERVAL_S", "0")
    harness = Harness(args.database_url, args.server, args.server_pid, env, py_spy=args.py_spy)
    with harness:
        fig = run_e2e(harness, p, show_progress=not args.quiet)
        if compact:
            run_ids = _run_ids(harness, p)
            fig.update(compaction_figures(harness, run_ids, args.compaction_wait,
                                          not args.server, args.compaction_timeout))
        if p.ceiling:
            fig.update(run_ceiling(harness, p, fig["points_sent"], not args.quiet))
        fig["server_peak_rss_mb"] = (tree_peak_rss_mb(harness.server_pid)
                                     if harness.server_pid else None)
    ceiling = fig.get("ceiling_points_per_s")
    fig["ratio_to_ceiling"] = fig["e2e_points_per_s"] / ceiling if ceiling else None
    fig["workers"] = harness.workers
    fig["lanes"] = harness.lanes
    out = {**fig, "params": {**asdict(p), "server_env": env,
                             "server": args.server or "spawned",
                             "database": "DATABASE_URL" if harness.db and not
                             harness.db.is_embedded else "embedded"},
           "environment": environment_info(),
           "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    print(render(out))
    busy = (out.get("other_processes_cores") or 0.0) + (out.get("unattributed_cores") or 0.0)
    if busy > 0.25:
        print(f"warning: other processes used {busy:.2f} cores during the run; the figures "
              "are lower than on a quiet machine", file=sys.stderr)
    if args.json:
        write_json(args.json, out)
    if out.get("exactly_once") is False:
        print("EXACTLY-ONCE CHECK FAILED", file=sys.stderr)
        return 1
    return 0


def _run_ids(h: Harness, p: IngestParams) -> list[str]:
    if not h.conninfo:
        return []
    with psycopg.connect(h.conninfo) as conn:
        rows = conn.execute(
            "SELECT r.run_id::text FROM runs r JOIN experiments e USING (experiment_id) "
            "WHERE e.name = %s", (f"bench-{p.profile}",)).fetchall()
    return [r[0] for r in rows]


def render(out: dict[str, Any]) -> str:
    """The readable table."""
    p = out["params"]
    head = (f"bench ingest  profile={p['profile']} transport={p['transport']} "
            f"streams={p['streams']} keys={p['keys']} batch_points={p['batch_points']} "
            + (f"rate={si(p['rate_points_s'])}pts/s" if p["rate_points_s"] else "rate=max"))
    rows: list[tuple[str, Any, str]] = [
        ("e2e points/s", out["e2e_points_per_s"], "committed / (last ack - start)"),
        ("ceiling points/s", out.get("ceiling_points_per_s"),
         f"one process, {out.get('ceiling_connections')} binary COPY connections, "
         f"best of {len(out.get('ceiling_passes_points_per_s') or [1])} passes"),
        ("ratio to ceiling", out.get("ratio_to_ceiling"), ""),
        ("points sent", out["points_sent"], ""),
        ("points committed", out.get("points_committed"),
         "exactly once" if out.get("exactly_once") else
         ("NOT EXACTLY ONCE" if out.get("exactly_once") is False else "")),
        ("ack p50 ms", out["ack_p50_ms"], "send -> ack covering the batch"),
        ("ack p99 ms", out["ack_p99_ms"], ""),
        ("server CPU s", out["server_cpu_s"], f"{out.get('server_cpu_cores', 0):.2f} cores: "
         + " ".join(f"{x['role']} {x['cores']:.2f}"
                    + (f" ({x['client_connections']} conn.)" if x.get("client_connections")
                       is not None and x["role"] != "supervisor" else "")
                    for x in out.get("server_processes", []))),
        ("postgres CPU s", out["postgres_cpu_s"],
         f"{out.get('postgres_cpu_cores') or 0:.2f} cores"),
        ("clients CPU s", out["clients_cpu_s"], f"{out['clients_cpu_cores']:.2f} cores"),
        ("server peak RSS MB", out["server_peak_rss_mb"], ""),
        ("disk bytes/point", out.get("disk_bytes_per_point"), "table + TOAST + indexes"),
        ("points per chunk", out.get("points_per_chunk"), ""),
        ("slow-downs", out["slow_downs"], ""),
        ("server workers x lanes", f"{out.get('workers')} x {out.get('lanes')}",
         f"ceiling: {out.get('ceiling_connections')} connections"),
        ("concurrent COPYs max / mean", f"{out.get('concurrent_copies_max')} / "
         f"{out.get('concurrent_copies_mean_while_copying') or 0:.2f}",
         f"COPY busy {100 * (out.get('copy_busy_fraction') or 0):.0f}% of samples"),
        ("other processes, cores", out.get("other_processes_cores"),
         f"CPU of processes this run did not start; "
         f"{out.get('unattributed_cores') or 0:.2f} more by short-lived ones"),
        ("kernel threads, cores", out.get("kernel_threads_cores"),
         f"writeback, journal; IRQ {out.get('irq_cores') or 0:.2f}, "
         f"I/O wait {out.get('iowait_cores') or 0:.2f} cores"),
    ]
    if "chunks_per_point_after_compaction" in out:
        rows += [
            ("server cores per 1k pts/s", out.get("server_cpu_cores_per_1k_points_s"), ""),
            ("chunks per point", out.get("chunks_per_point"), "before compaction"),
            ("chunks/point after compact.", out.get("chunks_per_point_after_compaction"), ""),
            ("bytes/point live, before", out.get("disk_bytes_per_point_live_before"),
             "after VACUUM FULL"),
            ("bytes/point after compact.", out.get("disk_bytes_per_point_after_compaction"),
             "after VACUUM FULL"),
            ("compaction s", out.get("compaction_s"),
             f"{out.get('compaction_rounds')} rounds, "
             + ("complete" if out.get("compaction_complete") else "INCOMPLETE (timeout)")),
        ]
    if out["ack_p50_ms"] is None:
        rows[5] = ("ack p50 ms", None, "not exposed by tracker_client: use --transport raw")
        rows[6] = ("client lag p50 / p99 ms",
                   f"{out['client_lag_p50_ms'] or 0:,.0f} / {out['client_lag_p99_ms'] or 0:,.0f}",
                   "age of the oldest unacked batch")
    return table(rows, head)


if __name__ == "__main__":
    sys.exit(main())
