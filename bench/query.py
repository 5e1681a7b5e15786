"""``python -m bench query``: read-path latencies of the query API.

Seed: 1,000 runs x 20 keys with summaries and chunks, one run with a
1M-point series ingested through the real stream, 10,000 runs with params for
SearchRuns, 1,000 experiments for ListExperiments. Then each RPC is called
``--iterations`` times from one client and p50/p99 latencies are reported.

The series figure is given twice: warm (the server's read cache holds the resolved
series, as for a dashboard refreshing or zooming) and after a write (one new point is
committed before every read, so the server must re-read all chunks from PostgreSQL).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import numpy as np
import psycopg

from bench.environment import Database, ServerProcess
from bench.report import write_json
from tracker_proto.v1 import experiments_pb2 as ex
from tracker_proto.v1 import (
    experiments_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    metrics_pb2,
    query_pb2,
)
from tracker_proto.v1 import query_pb2_grpc as qg

_SEED_RUNS_SQL = """
INSERT INTO runs (run_id, experiment_id, name, status, created_at)
SELECT gen_random_uuid(), %(exp)s, 'run-' || i, 1 + (i %% 4), now() - make_interval(secs => i)
FROM generate_series(1, %(n)s) i
"""
_SEED_PARAMS_SQL = """
INSERT INTO run_params (run_id, key, value)
SELECT r.run_id, p.key, CASE p.key
    WHEN 'lr' THEN (10 ^ (-1 - 4 * random()))::text
    WHEN 'opt' THEN (ARRAY['adam', 'sgd', 'adamw'])[1 + floor(random() * 3)::int]
    WHEN 'bs' THEN (ARRAY['32', '64', '128', '256'])[1 + floor(random() * 4)::int]
    ELSE floor(random() * 1000)::text END
FROM runs r CROSS JOIN (VALUES ('lr'), ('opt'), ('bs'), ('seed'), ('layers')) AS p(key)
WHERE r.experiment_id = %(exp)s
"""
_SEED_KEYS_SQL = """
INSERT INTO metric_keys (name) SELECT 'm' || k FROM generate_series(0, 19) k
ON CONFLICT (name) DO NOTHING
"""
# 100-point chunks per (run, key) and matching summaries, as the flusher would write.
_SEED_CHUNKS_SQL = """
INSERT INTO metric_chunks (run_id, key_id, rank, attempt, first_step, last_step, n, steps,
                           "values", wall_ns)
SELECT r.run_id, k.key_id, 0, 0, 0, 99, 100,
       ARRAY(SELECT g FROM generate_series(0, 99) g)::int8[],
       ARRAY(SELECT random() FROM generate_series(0, 99))::float8[],
       ARRAY(SELECT g * 1000 FROM generate_series(0, 99) g)::int8[]
FROM runs r CROSS JOIN metric_keys k
WHERE r.experiment_id = %(exp)s AND k.name LIKE 'm%%'
"""
_SEED_SUMMARY_SQL = """
INSERT INTO run_metric_summary (run_id, key_id, count, first_step, last_step, last_value,
    last_attempt, last_wall_ns, min_value, min_step, max_value, max_step)
SELECT c.run_id, c.key_id, c.n, 0, 99, c."values"[100], 0, 99000,
       (SELECT min(v) FROM unnest(c."values") v), 0,
       (SELECT max(v) FROM unnest(c."values") v), 0
FROM metric_chunks c JOIN runs r USING (run_id)
WHERE r.experiment_id = %(exp)s
"""
_SEED_EXPERIMENTS_SQL = """
INSERT INTO experiments (experiment_id, name, owner, created_at)
SELECT gen_random_uuid(), 'exp-' || i, 'team-' || (i %% 10), now() - make_interval(secs => i)
FROM generate_series(1, %(n)s) i
"""


def _timed(fn: Callable[[], Any], iterations: int, before: Callable[[], Any] | None = None
           ) -> dict[str, float]:
    """p50/p99/mean of ``fn`` in milliseconds (``before`` runs untimed each time)."""
    fn()  # warm-up: connection, prepared paths
    samples = []
    for _ in range(iterations):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return {
        "p50": round(statistics.median(samples), 2),
        "p99": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 2),
        "mean": round(statistics.fmean(samples), 2),
    }


def _create_experiment(stub: experiments_pb2_grpc.ExperimentServiceStub, name: str) -> str:
    req = ex.CreateExperimentRequest(name=name, owner="bench", get_if_exists=True)
    return str(stub.CreateExperiment(req).experiment.experiment_id)


def _ingest_series(channel: grpc.Channel, run_id: str, key: str, n: int, batch: int,
                   first_step: int = 0, seq0: int = 0, writer: str = "bench-1m") -> int:
    """Stream n points of one key; returns the last seq."""
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    rng = np.random.default_rng(7)

    def requests() -> Iterator[ingest_pb2.StreamRequest]:
        yield ingest_pb2.StreamRequest(open=ingest_pb2.Open(run_id=run_id, writer_id=writer))
        seq = seq0
        for start in range(0, n, batch):
            m = min(batch, n - start)
            steps = np.arange(first_step + start, first_step + start + m, dtype=np.int64)
            cols = metrics_pb2.MetricColumns(keys=[key])
            cols.key_index.extend([0] * m)
            cols.steps.extend(steps.tolist())
            cols.values.extend((np.exp(-steps / 2e5) + rng.normal(0, 0.01, m)).tolist())
            cols.wall_time_ns.extend((steps * 1_000_000).tolist())
            seq += 1
            yield ingest_pb2.StreamRequest(batch=ingest_pb2.Batch(seq=seq, columns=cols))

    last = 0
    for resp in stub.Stream(requests(), timeout=600):
        if resp.WhichOneof("kind") == "ack":
            last = resp.ack.committed_through_seq
        elif resp.WhichOneof("kind") == "rejected":
            raise RuntimeError(f"batch rejected: {resp.rejected.message}")
    return int(last)


def seed(conninfo: str, address: str, series_points: int, runs: int, search_runs: int,
         experiments: int) -> dict[str, Any]:
    """Create the data set; returns ids the measurements use."""
    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)])
    exps = experiments_pb2_grpc.ExperimentServiceStub(channel)
    best_exp = _create_experiment(exps, "bench-best")
    search_exp = _create_experiment(exps, "bench-search")
    series_exp = _create_experiment(exps, "bench-series")
    big_run = exps.CreateRun(ex.CreateRunRequest(experiment_id=series_exp, name="big")).run.run_id
    t0 = time.perf_counter()
    _ingest_series(channel, big_run, "loss", series_points, 10_000)
    ingest_s = time.perf_counter() - t0
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(_SEED_RUNS_SQL, {"exp": best_exp, "n": runs})
        conn.execute(_SEED_KEYS_SQL)
        conn.execute(_SEED_CHUNKS_SQL, {"exp": best_exp})
        conn.execute(_SEED_SUMMARY_SQL, {"exp": best_exp})
        conn.execute(_SEED_RUNS_SQL, {"exp": search_exp, "n": search_runs})
        conn.execute(_SEED_PARAMS_SQL, {"exp": search_exp})
        conn.execute(_SEED_EXPERIMENTS_SQL, {"n": experiments})
        conn.execute("VACUUM ANALYZE")
        chunks = conn.execute(
            "SELECT count(*), avg(n)::int FROM metric_chunks WHERE run_id = %s", (big_run,)
        ).fetchone()
    channel.close()
    return {"best_exp": best_exp, "search_exp": search_exp, "big_run": big_run,
            "series_ingest_s": round(ingest_s, 2),
            "series_chunks": chunks[0] if chunks else 0,
            "series_points_per_chunk": chunks[1] if chunks else 0}


def measure(address: str, ids: dict[str, Any], iterations: int) -> dict[str, Any]:
    """Latency figures of every measured RPC."""
    channel = grpc.insecure_channel(address,
                                    options=[("grpc.max_receive_message_length", 64 << 20)])
    exps = experiments_pb2_grpc.ExperimentServiceStub(channel)
    query = qg.MetricsQueryServiceStub(channel)
    out: dict[str, Any] = {}

    series_req = query_pb2.GetMetricSeriesRequest(run_ids=[ids["big_run"]], keys=["loss"],
                                                  max_points=1000)
    resp = query.GetMetricSeries(series_req)
    assert len(resp.series) == 1 and len(resp.series[0].steps) <= 1000
    out["series_total_points"] = resp.series[0].total_points
    r = _timed(lambda: query.GetMetricSeries(series_req), iterations)
    out["series_1m_to_1k_p50_ms"], out["series_1m_to_1k_p99_ms"] = r["p50"], r["p99"]
    lttb_req = query_pb2.GetMetricSeriesRequest(
        run_ids=[ids["big_run"]], keys=["loss"], max_points=1000,
        downsampling=query_pb2.DOWNSAMPLING_LTTB)
    r = _timed(lambda: query.GetMetricSeries(lttb_req), iterations)
    out["series_1m_to_1k_lttb_p50_ms"], out["series_1m_to_1k_lttb_p99_ms"] = r["p50"], r["p99"]
    zoom_req = query_pb2.GetMetricSeriesRequest(
        run_ids=[ids["big_run"]], keys=["loss"], max_points=1000, start_step=400_000,
        end_step=500_000)
    r = _timed(lambda: query.GetMetricSeries(zoom_req), iterations)
    out["series_zoom_100k_to_1k_p50_ms"] = r["p50"]

    # After a write: a new committed point changes the series version, so every read
    # goes to PostgreSQL for all chunks (the cost of a live, still-logging run).
    step = [int(out["series_total_points"])]
    seq = [0]
    channel_w = grpc.insecure_channel(address)

    def write_one() -> None:
        seq[0] = _ingest_series(channel_w, ids["big_run"], "loss", 1, 1, first_step=step[0],
                                seq0=seq[0], writer="bench-tail")
        step[0] += 1

    r = _timed(lambda: query.GetMetricSeries(series_req), max(5, iterations // 4),
               before=write_one)
    out["series_1m_to_1k_after_write_p50_ms"] = r["p50"]
    out["series_1m_to_1k_after_write_p99_ms"] = r["p99"]
    # A dashboard zoomed into part of a live run: every refresh follows a write.
    r = _timed(lambda: query.GetMetricSeries(zoom_req), max(5, iterations // 4),
               before=write_one)
    out["series_zoom_100k_to_1k_after_write_p50_ms"] = r["p50"]
    out["series_zoom_100k_to_1k_after_write_p99_ms"] = r["p99"]
    channel_w.close()

    best_req = query_pb2.GetBestRunsRequest(experiment_ids=[ids["best_exp"]], key="m3",
                                            goal=query_pb2.GOAL_MAXIMIZE, limit=10)
    assert len(query.GetBestRuns(best_req).runs) == 10
    r = _timed(lambda: query.GetBestRuns(best_req), iterations)
    out["best_runs_p50_ms"], out["best_runs_p99_ms"] = r["p50"], r["p99"]

    list_req = ex.ListExperimentsRequest(page_size=50)
    first = exps.ListExperiments(list_req)
    assert len(first.experiments) == 50
    r = _timed(lambda: exps.ListExperiments(list_req), iterations)
    out["list_experiments_p50_ms"], out["list_experiments_p99_ms"] = r["p50"], r["p99"]
    next_req = ex.ListExperimentsRequest(page_size=50, page_token=first.next_page_token)
    r = _timed(lambda: exps.ListExperiments(next_req), iterations)
    out["list_experiments_page2_p50_ms"] = r["p50"]

    search_req = ex.SearchRunsRequest(experiment_ids=[ids["search_exp"]],
                                      filter='params.lr < 0.001 and params.opt = "adam"',
                                      page_size=50)
    out["search_runs_page_len"] = len(exps.SearchRuns(search_req).runs)
    r = _timed(lambda: exps.SearchRuns(search_req), iterations)
    out["search_runs_p50_ms"], out["search_runs_p99_ms"] = r["p50"], r["p99"]
    ordered_req = ex.SearchRunsRequest(experiment_ids=[ids["search_exp"]],
                                       filter="params.lr < 0.001", order_by=["params.lr"],
                                       page_size=50)
    r = _timed(lambda: exps.SearchRuns(ordered_req), iterations)
    out["search_runs_order_by_param_p50_ms"] = r["p50"]
    channel.close()
    return out


def main(argv: list[str] | None = None) -> int:
    """Seed, measure, print and write JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench query", description=__doc__)
    parser.add_argument("--series-points", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1_000)
    parser.add_argument("--search-runs", type=int, default=10_000)
    parser.add_argument("--experiments", type=int, default=1_000)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--json", default="bench/results/query.json", metavar="PATH",
                        help="write the figures to this file (default: %(default)s)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    with Database() as db:
        server = ServerProcess(db.conninfo).start()
        try:
            print("seeding ...", file=sys.stderr)
            ids = seed(db.conninfo, server.address, args.series_points, args.runs,
                       args.search_runs, args.experiments)
            print("measuring ...", file=sys.stderr)
            figures = measure(server.address, ids, args.iterations)
        finally:
            server.stop()
    result = {
        "benchmark": "query",
        "seed": {"series_points": args.series_points, "runs_x_keys": [args.runs, 20],
                 "search_runs": args.search_runs, "experiments": args.experiments + 2,
                 **{k: v for k, v in ids.items() if k.startswith("series_")}},
        "iterations": args.iterations,
        **figures,
        "targets_ms": {"series_1m_to_1k_p50_ms": 30, "best_runs_p50_ms": 20,
                       "list_experiments_p50_ms": 5, "search_runs_p50_ms": 50},
        "elapsed_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(result, indent=2))
    write_json(args.json, result)
    return 0
