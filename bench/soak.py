"""``python -m bench soak``: a long run of steady ingest plus query load.

``--streams`` writers (``tracker_client``, one run each, a rank per writer) log at a
fixed rate while a reader issues series reads, latest values, searches and rankings
without pause. Every second the harness samples the server's RSS, points logged and
acknowledged, and queries served. At the end every writer closes and the database is
counted: points stored must equal points logged (none lost, none twice).

Figures (JSON, plus a PNG of RSS and throughput over time):

- ``points_logged``, ``points_stored``, ``points_lost``, ``duplicates``, ``errors``;
- ``ingest_points_per_s`` (acknowledged, mean over the run) and ``queries_per_s``;
- ``rss_mib`` (start, end, max; the supervisor and its workers together) and
  ``rss_slope_mib_per_min`` over the second half:
  flat memory means a slope near zero;
- ``samples``: the time series behind the chart.
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil  # type: ignore[import-untyped]  # no stubs in the test extra

from bench.environment import Database, ServerProcess, exit_on_sigterm, tree_rss
from bench.report import table, write_json

DEFAULT_OUT = Path(__file__).parent / "results" / "soak.json"
KEYS = ("loss", "acc", "lr", "grad_norm", "throughput")


@dataclass
class Counters:
    """What the load threads count (each field written by one thread)."""

    queries: int = 0
    query_errors: int = 0
    query_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Writer(threading.Thread):
    """One training process logging ``KEYS`` at ``steps_per_s``."""

    def __init__(self, address: str, index: int, steps_per_s: float, spool: Path,
                 stop: threading.Event) -> None:
        super().__init__(daemon=True, name=f"soak-writer-{index}")
        self.address = address
        self.index = index
        self.steps_per_s = steps_per_s
        self.spool = spool
        self.stop = stop
        self.run_obj: Any = None
        self.steps = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        import tracker_client

        try:
            opts = tracker_client.Options(spool_dir=self.spool, system_metrics_interval_s=None,
                                          recover_orphans=False)
            self.run_obj = tracker_client.init(experiment="soak", server=self.address,
                                               run_key=f"soak-{self.index}", rank=0,
                                               options=opts)
            period = 1.0 / self.steps_per_s
            next_at = time.monotonic()
            while not self.stop.is_set():
                s = self.steps
                self.run_obj.log({k: math.sin(s * 1e-3 + i) + s * 1e-9
                                  for i, k in enumerate(KEYS)}, step=s)
                self.steps += 1
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        except BaseException as exc:  # reported in the figures
            self.error = exc

    @property
    def acked(self) -> int:
        """Points acknowledged so far."""
        return int(self.run_obj.stats.points_acked) if self.run_obj is not None else 0


def _query_load(address: str, writers: list[Writer], stop: threading.Event,
                counters: Counters) -> None:
    """Series reads, latest values, searches and rankings, back to back."""
    import grpc

    from tracker_proto.v1 import experiments_pb2 as ex
    from tracker_proto.v1 import experiments_pb2_grpc, query_pb2_grpc
    from tracker_proto.v1 import query_pb2 as q

    rng = random.Random(1)
    with grpc.insecure_channel(address) as channel:
        runs = experiments_pb2_grpc.ExperimentServiceStub(channel)
        query = query_pb2_grpc.MetricsQueryServiceStub(channel)
        while not stop.is_set():
            ids = [w.run_obj.run_id for w in writers if w.run_obj is not None and w.run_obj.run_id]
            if not ids:
                time.sleep(0.1)
                continue
            started = time.perf_counter()
            try:
                kind = rng.randrange(4)
                if kind == 0:
                    query.GetMetricSeries(q.GetMetricSeriesRequest(
                        run_ids=[rng.choice(ids)], keys=list(KEYS[:2]), max_points=500),
                        timeout=30)
                elif kind == 1:
                    query.GetLatestMetrics(q.GetLatestMetricsRequest(run_ids=ids), timeout=30)
                else:
                    run = runs.GetRun(ex.GetRunRequest(run_id=ids[0]), timeout=30).run
                    if kind == 2:
                        runs.SearchRuns(ex.SearchRunsRequest(
                            experiment_ids=[run.experiment_id],
                            filter="metrics.loss.min < 0.5", order_by=["metrics.acc desc"]),
                            timeout=30)
                    else:
                        query.GetBestRuns(q.GetBestRunsRequest(
                            experiment_ids=[run.experiment_id], key="loss",
                            goal=q.GOAL_MINIMIZE, on=q.SUMMARY_FIELD_MIN), timeout=30)
                counters.queries += 1
                counters.query_ms.append((time.perf_counter() - started) * 1000)
            except grpc.RpcError as exc:
                counters.query_errors += 1
                if len(counters.errors) < 20:
                    counters.errors.append(f"query: {exc.code().name}: {exc.details()}")
            time.sleep(0.01)


def _stored(conninfo: str, run_ids: list[str]) -> tuple[int, int]:
    """(points stored, distinct (run, key, step)) of the soak's runs."""
    import psycopg

    from tracker_server.storage.points_export import materialize_points

    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(n), 0) FROM metric_chunks WHERE run_id = ANY(%s::uuid[])",
            (run_ids,)).fetchone()
        # Chunks are codec payloads: decode them into the session's metric_points view.
        materialize_points(conn, run_ids)
        distinct = conn.execute(
            "SELECT count(*) FROM (SELECT DISTINCT run_id, key, step FROM metric_points "
            "WHERE run_id = ANY(%s::uuid[])) d", (run_ids,)).fetchone()
    assert row is not None and distinct is not None
    return int(row[0]), int(distinct[0])


def _slope_mib_per_min(samples: list[dict[str, float]]) -> float:
    half = samples[len(samples) // 2:]
    if len(half) < 3:
        return 0.0
    t = np.array([s["t"] for s in half])
    rss = np.array([s["rss_mib"] for s in half])
    return float(np.polyfit(t, rss, 1)[0] * 60)


def _chart(samples: list[dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] for s in samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    top.plot(t, [s["rss_mib"] for s in samples], color="tab:red")
    top.set_ylabel("server RSS (MiB)")
    top.set_ylim(bottom=0)
    top.grid(alpha=0.3)
    bottom.plot(t, [s["acked_per_s"] for s in samples], label="points acknowledged/s")
    bottom.plot(t, [s["logged_per_s"] for s in samples], label="points logged/s", alpha=0.6)
    bottom.set_ylabel("points/s")
    bottom.set_xlabel("seconds")
    bottom.set_ylim(bottom=0)
    bottom.grid(alpha=0.3)
    bottom.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def soak(duration_s: float, streams: int, steps_per_s: float, conninfo: str,
         work: Path, quiet: bool = False) -> dict[str, Any]:
    """Run the soak against a fresh server on ``conninfo``; the figures."""
    server = ServerProcess(conninfo, log_path=work / "server.log").start()
    stop_logging = threading.Event()
    stop_queries = threading.Event()
    counters = Counters()
    try:
        proc = psutil.Process(server.pid)
        writers = [Writer(server.address, i, steps_per_s, work / f"spool{i}", stop_logging)
                   for i in range(streams)]
        for w in writers:
            w.start()
        reader = threading.Thread(target=_query_load, daemon=True,
                                  args=(server.address, writers, stop_queries, counters))
        reader.start()
        samples: list[dict[str, float]] = []
        started = time.monotonic()
        prev = (started, 0, 0, 0)
        while (now := time.monotonic()) - started < duration_s:
            time.sleep(max(0.0, 1.0 - (time.monotonic() - now)))
            now = time.monotonic()
            acked = sum(w.acked for w in writers)
            logged = sum(w.steps for w in writers) * len(KEYS)
            dt = now - prev[0]
            samples.append({
                "t": round(now - started, 2),
                "rss_mib": round(tree_rss(proc) / (1 << 20), 1),
                "acked": acked, "logged": logged, "queries": counters.queries,
                "acked_per_s": round((acked - prev[1]) / dt, 1),
                "logged_per_s": round((logged - prev[2]) / dt, 1),
                "queries_per_s": round((counters.queries - prev[3]) / dt, 1),
            })
            prev = (now, acked, logged, counters.queries)
            if not quiet and len(samples) % 10 == 0:
                s = samples[-1]
                print(f"  t={s['t']:.0f}s rss={s['rss_mib']} MiB "
                      f"acked/s={s['acked_per_s']:.0f} queries/s={s['queries_per_s']:.0f}",
                      flush=True)
        stop_logging.set()
        for w in writers:
            w.join(30)
        reports = [w.run_obj.close(timeout=120) for w in writers if w.run_obj is not None]
        stop_queries.set()
        reader.join(30)
        elapsed = time.monotonic() - started
        run_ids = [w.run_obj.run_id for w in writers if w.run_obj is not None]
        logged_total = sum(w.steps for w in writers) * len(KEYS)
        stored, distinct = _stored(conninfo, run_ids)
        errors = [f"writer {w.index}: {w.error!r}" for w in writers if w.error is not None]
        errors += [f"writer not durable: {r}" for r in reports if not r.durable]
        errors += counters.errors
        rss = [s["rss_mib"] for s in samples]
        lat = np.array(counters.query_ms or [0.0])
        return {
            "duration_s": round(elapsed, 1),
            "streams": streams,
            "steps_per_s_per_stream": steps_per_s,
            "points_logged": logged_total,
            "points_stored": stored,
            "points_lost": logged_total - distinct,
            "duplicates": stored - distinct,
            "errors": len(errors) + counters.query_errors,
            "error_messages": errors,
            "ingest_points_per_s": round(samples[-1]["acked"] / samples[-1]["t"], 1)
            if samples else 0.0,
            "queries": counters.queries,
            "queries_per_s": round(counters.queries / elapsed, 1),
            "query_p50_ms": round(float(np.percentile(lat, 50)), 2),
            "query_p99_ms": round(float(np.percentile(lat, 99)), 2),
            "rss_mib": {"start": rss[0] if rss else None, "end": rss[-1] if rss else None,
                        "max": max(rss) if rss else None},
            "rss_slope_mib_per_min": round(_slope_mib_per_min(samples), 3),
            "samples": samples,
        }
    finally:
        stop_logging.set()
        stop_queries.set()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    p.add_argument("--streams", type=int, default=8, help="ingest streams (default 8)")
    p.add_argument("--steps-per-s", type=float, default=400,
                   help=f"steps/s per stream, {len(KEYS)} points each (default 400)")
    p.add_argument("--database-url", help="PostgreSQL to use (default: a fresh embedded one)")
    p.add_argument("--json", metavar="PATH", type=Path, default=DEFAULT_OUT,
                   help=f"where to write the figures (default {DEFAULT_OUT})")
    p.add_argument("--png", metavar="PATH", type=Path,
                   help="chart of RSS and throughput (default: the JSON path with .png)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    exit_on_sigterm()
    with tempfile.TemporaryDirectory(prefix="tracker-soak-") as tmp, \
            Database(args.database_url) as db:
        result = soak(args.duration, args.streams, args.steps_per_s, db.conninfo, Path(tmp),
                      args.quiet)
    png = args.png or args.json.with_suffix(".png")
    _chart(result["samples"], png,
           f"soak: {args.streams} streams + queries, {result['duration_s']:.0f} s")
    result["chart"] = str(png)
    write_json(args.json, result)
    rss = result["rss_mib"]
    print(table([
        ("points logged", result["points_logged"], ""),
        ("points stored", result["points_stored"], ""),
        ("points lost", result["points_lost"], "must be 0"),
        ("duplicates", result["duplicates"], "must be 0"),
        ("errors", result["errors"], "must be 0"),
        ("ingest", result["ingest_points_per_s"], "points/s acknowledged"),
        ("queries", result["queries_per_s"], f"/s, p99 {result['query_p99_ms']} ms"),
        ("server RSS", f"{rss['start']} -> {rss['end']} (max {rss['max']})", "MiB"),
        ("RSS slope", result["rss_slope_mib_per_min"], "MiB/min over the second half"),
    ], title="soak"))
    ok = result["points_lost"] == 0 and result["duplicates"] == 0 and result["errors"] == 0
    return 0 if ok else 1
