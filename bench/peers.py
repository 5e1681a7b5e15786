"""``python -m bench peers --peer mlflow``: the same workload through a peer system.

Needs the ``peers`` extra (``pip install -e '.[peers]'``: MLflow). One PostgreSQL
cluster (embedded, or the server of ``DATABASE_URL``) holds both systems, each in its
own database. The peer's server runs on 127.0.0.1 as its own process. Then, one after
the other, never at the same time:

* **tracker**: ``bench ingest`` with the real client library (``--transport client``),
  ``--streams`` processes, batches of ``--batch-points`` points;
* **mlflow**: ``mlflow server`` (its default worker count) on the same cluster;
  ``--streams`` processes each create a run and call ``MlflowClient.log_batch`` with
  whole steps of the same workload, at most 1,000 metrics per call (MLflow's limit),
  for ``--peer-duration`` seconds. ``log_batch`` returns once the rows are committed,
  so a returned call is the peer's "ack".

Both sides are checked by counting rows/points in PostgreSQL; bytes per point come
from the growth of the tables that store points (tracker: ``metric_chunks``;
MLflow: ``metrics`` + ``latest_metrics``).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from bench.environment import (
    CpuMeter,
    Database,
    die_with_parent,
    exit_on_sigterm,
    free_port,
    python_dying_with_parent,
)
from bench.ingest import Harness, IngestParams, environment_info, run_e2e
from bench.report import Progress, si, table, write_json
from bench.workload import StreamPoints, Workload

MLFLOW_MAX_BATCH = 1000
"""MLflow's log_batch limit on metrics per call."""
MLFLOW_DB = "mlflow_bench"


def _mlflow_db_url(db: Database) -> tuple[str, str]:
    """(psycopg conninfo, SQLAlchemy URL) of a fresh MLflow database in the same cluster."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(db.conninfo)
    with psycopg.connect(db.conninfo, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {MLFLOW_DB}")  # constant name, not input
        conn.execute(f"CREATE DATABASE {MLFLOW_DB}")
    params["dbname"] = MLFLOW_DB
    conninfo = make_conninfo("", **{k: v for k, v in params.items() if v is not None})
    from sqlalchemy.engine import URL

    host = str(params.get("host") or "")
    query = {}
    if host.startswith("/"):
        query["host"] = host  # Unix socket directory (the embedded server has no TCP)
        host = ""
    url = URL.create(
        "postgresql+psycopg", username=str(params.get("user") or "postgres"),
        password=str(params["password"]) if params.get("password") else None,
        host=host or None, port=int(str(params["port"])) if params.get("port") and host else None,
        database=MLFLOW_DB, query=query,
    )
    return conninfo, url.render_as_string(hide_password=False)


class MlflowServer:
    """``mlflow server`` on 127.0.0.1:<free port> with a PostgreSQL backend store."""

    def __init__(self, backend_uri: str, workers: int | None, log_path: Path) -> None:
        self.backend_uri = backend_uri
        self.workers = workers
        self.log_path = log_path
        self.port = free_port()
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-mlflow-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Tracking URI."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 180) -> MlflowServer:
        """Start and wait for /health (the first start runs MLflow's migrations)."""
        cmd = python_dying_with_parent(
            "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--backend-store-uri", self.backend_uri,
            "--default-artifact-root", str(self.tmp / "artifacts"))
        if self.workers:
            cmd += ["--workers", str(self.workers)]
        log = open(self.log_path, "wb")  # noqa: SIM115 (lives as long as the process)
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n"
                                   + self.log_tail())
            with contextlib.suppress(OSError), urllib.request.urlopen(
                    self.url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return self
            if time.monotonic() > deadline:
                raise TimeoutError("mlflow server not healthy:\n" + self.log_tail())
            time.sleep(0.5)

    def log_tail(self, lines: int = 30) -> str:
        """Last lines of the server's output."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server's process group (gunicorn/uvicorn workers included)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, 9)
                self.proc.wait(5)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _mlflow_worker(url: str, experiment: str, run_name: str, stream: int, workload: Workload,
                   duration_s: float, ready: Any, go: Any, t0: Any, progress: Any,
                   results: Any) -> None:
    """One MLflow client process: create a run, log_batch whole steps until the deadline."""
    out: dict[str, Any] = {"stream": stream}
    die_with_parent()
    try:
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=url)
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else _create_experiment(client, experiment)
        run = client.create_run(exp_id, run_name=run_name)
        run_id = run.info.run_id
        gen = StreamPoints(workload, stream)
        names = workload.key_names()
        steps_per_call = max(1, min(workload.batch_points, MLFLOW_MAX_BATCH) // workload.keys)
        ready.release()
        go.wait()
        start = float(t0.value)
        deadline = start + duration_s
        step = sent = 0
        lat: list[float] = []
        while time.monotonic() < deadline:
            cols = gen.batch(step, steps_per_call)
            ts_ms = (cols.wall_ns // 1_000_000).tolist()
            metrics = [Metric(names[k], v, t, s) for k, v, t, s in zip(
                cols.key_index.tolist(), cols.values.tolist(), ts_ms, cols.steps.tolist(),
                strict=True)]
            t = time.monotonic()
            client.log_batch(run_id, metrics=metrics)
            lat.append((time.monotonic() - t) * 1000)
            sent += cols.n
            step += steps_per_call
            progress[stream] = sent
        out.update(run_id=run_id, points_sent=sent, t_end=time.monotonic(), call_ms=lat)
    except Exception:
        out["error"] = traceback.format_exc()
        ready.release()
    results.put(out)


def _create_experiment(client: Any, name: str) -> str:
    try:
        return str(client.create_experiment(name))
    except Exception:  # another worker created it first
        return str(client.get_experiment_by_name(name).experiment_id)


def run_mlflow(server: MlflowServer, conninfo: str, workload: Workload, streams: int,
               duration_s: float, show_progress: bool) -> dict[str, Any]:
    """The workload through MLflow; figures from the clients and from PostgreSQL."""
    ctx = mp.get_context("spawn")
    progress = ctx.Array("q", streams, lock=False)
    ready, go, t0 = ctx.Semaphore(0), ctx.Event(), ctx.Value("d", 0.0, lock=False)
    results: Any = ctx.Queue()
    tag = uuid.uuid4().hex[:8]
    procs = [ctx.Process(target=_mlflow_worker, daemon=True, args=(
        server.url, "bench-peers", f"bench-{tag}-{i}", i, workload, duration_s,
        ready, go, t0, progress, results)) for i in range(streams)]
    for pr in procs:
        pr.start()
    for _ in procs:
        if not ready.acquire(timeout=120):
            raise RuntimeError("mlflow clients did not start:\n" + server.log_tail())
    with psycopg.connect(conninfo) as conn:
        before = _mlflow_bytes(conn)
    assert server.proc is not None
    server_cpu = CpuMeter(server.proc.pid, children=True)
    server_cpu.start()
    start = time.monotonic()
    t0.value = start
    go.set()
    bar = Progress("mlflow", None) if show_progress else None
    got: list[dict[str, Any]] = []
    while len(got) < streams:
        with contextlib.suppress(Exception):
            got.append(results.get(timeout=0.25))
        if bar is not None:
            bar.update(float(sum(progress[:])), (time.monotonic() - start) / duration_s)
        if time.monotonic() - start > duration_s + 300:
            raise RuntimeError("mlflow run did not finish")
    cpu_s = server_cpu.stop()
    if bar is not None:
        bar.close()
    for pr in procs:
        pr.join(10)
    errors = [g["error"] for g in got if "error" in g]
    if errors:
        raise RuntimeError("mlflow client failed:\n" + "\n".join(errors) + server.log_tail())
    sent = sum(g["points_sent"] for g in got)
    elapsed = max(g["t_end"] for g in got) - start
    lat = np.array([x for g in got for x in g["call_ms"]])
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute("SELECT count(*) FROM metrics WHERE run_uuid = ANY(%s)",
                            ([g["run_id"] for g in got],)).fetchone()
        after = _mlflow_bytes(conn)
    committed = int(rows[0]) if rows else 0
    return {
        "peer_points_per_s": committed / elapsed,
        "peer_points_sent": sent,
        "peer_points_committed": committed,
        "peer_elapsed_s": elapsed,
        "peer_call_p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "peer_call_p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "peer_calls": int(lat.size),
        "peer_server_cpu_s": cpu_s,
        "peer_disk_bytes_per_point": (after - before) / committed if committed else None,
    }


def _mlflow_bytes(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "WHERE c.relname IN ('metrics', 'latest_metrics') AND c.relkind = 'r'").fetchone()
    return int(row[0]) if row else 0


def main(argv: list[str] | None = None) -> int:
    """``python -m bench peers``."""
    exit_on_sigterm()
    p = argparse.ArgumentParser(prog="python -m bench peers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peer", choices=["mlflow"], default="mlflow")
    p.add_argument("--streams", type=int, default=4, help="client processes, both systems")
    p.add_argument("--keys", type=int, default=20)
    p.add_argument("--batch-points", type=int, default=MLFLOW_MAX_BATCH,
                   help="points per request, both systems (MLflow caps it at 1000)")
    p.add_argument("--duration", type=float, default=10.0, help="tracker: seconds of sending")
    p.add_argument("--peer-duration", type=float, default=20.0, help="peer: seconds")
    p.add_argument("--peer-workers", type=int, help="mlflow server --workers (default: its own)")
    p.add_argument("--transport", choices=["client", "raw"], default="client",
                   help="tracker side (default: the client library)")
    p.add_argument("--database-url", help="default DATABASE_URL, else embedded PostgreSQL")
    p.add_argument("--json", metavar="PATH", help="write the figures to this file")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        import mlflow
    except ImportError:
        print("MLflow is not installed: pip install -e '.[peers]'", file=sys.stderr)
        return 2
    wl = Workload(keys=args.keys, batch_points=min(args.batch_points, MLFLOW_MAX_BATCH))
    params = replace(IngestParams(), streams=args.streams, keys=wl.keys,
                     batch_points=wl.batch_points, duration_s=args.duration,
                     transport=args.transport, ceiling=False, profile="peers")
    logs = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    with Database(args.database_url) as db:
        with Harness(db.conninfo) as h:
            tracker = run_e2e(h, params, show_progress=not args.quiet, label="tracker")
        ml_conninfo, ml_url = _mlflow_db_url(db)
        server = MlflowServer(ml_url, args.peer_workers, logs / "mlflow.log")
        try:
            server.start()
            peer = run_mlflow(server, ml_conninfo, wl, args.streams, args.peer_duration,
                              not args.quiet)
        finally:
            server.stop()
    out = {
        "tracker_points_per_s": tracker["e2e_points_per_s"],
        "peer_points_per_s": peer["peer_points_per_s"],
        "ratio": tracker["e2e_points_per_s"] / peer["peer_points_per_s"]
        if peer["peer_points_per_s"] else None,
        "peer": "mlflow", "peer_version": mlflow.__version__,
        "tracker_points_committed": tracker.get("points_committed"),
        "tracker_exactly_once": tracker.get("exactly_once"),
        "tracker_disk_bytes_per_point": tracker.get("disk_bytes_per_point"),
        "tracker_server_cpu_s": tracker.get("server_cpu_s"),
        "tracker_elapsed_s": tracker.get("elapsed_s"),
        **peer,
        "workload": {**wl.as_dict(), "streams": args.streams,
                     "tracker_duration_s": args.duration,
                     "peer_duration_s": args.peer_duration,
                     "peer_workers": args.peer_workers or "mlflow default",
                     "tracker_transport": args.transport},
        "environment": environment_info(),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    print(table([
        ("tracker points/s", out["tracker_points_per_s"],
         f"{args.transport}, committed {out['tracker_points_committed']:,}"),
        ("mlflow points/s", out["peer_points_per_s"],
         f"log_batch, committed {out['peer_points_committed']:,}"),
        ("ratio", out["ratio"], "tracker / mlflow"),
        ("mlflow log_batch p50 ms", out["peer_call_p50_ms"], ""),
        ("mlflow log_batch p99 ms", out["peer_call_p99_ms"], ""),
        ("tracker bytes/point", out["tracker_disk_bytes_per_point"], ""),
        ("mlflow bytes/point", out["peer_disk_bytes_per_point"], "metrics + latest_metrics"),
    ], f"bench peers  mlflow {mlflow.__version__}  streams={args.streams} keys={wl.keys} "
       f"batch={wl.batch_points}"))
    print(f"tracker is {si(out['ratio'])}x MLflow on this workload")
    if args.json:
        write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
