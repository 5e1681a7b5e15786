"""``python -m bench export --json PATH``: full-resolution reads through the read API.

Logs one run of ``--points`` points (default 10 M) spread over ``--keys`` keys through the
raw ingest stream, then reads every point back ``--repeats`` times with
``tracker_client.Api.history(keys)`` (``StreamMetricSeries``, no downsampling) and
reports points/s, split into where the time goes:

* ``api_numpy``: ``history(..., as_frame=False)`` — the whole path into numpy columns;
* ``api_pandas``: the same into a DataFrame;
* ``stream_only``: the same gRPC streams (packed form), each message parsed but not
  converted (server, transport and protobuf parsing: the ceiling for any client);
* ``stream_only_repeated``: the same with the repeated fields (what clients that do not
  ask for the packed form get);
* ``client_decode``: parsing plus numpy conversion of messages already received (the
  client's own cost, without the server).

Run it alone: it loads both cores. The target is 10 M points/s for ``api_numpy``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import grpc

from bench.environment import Database, ServerProcess
from bench.ingest import environment_info
from bench.query import _ingest_series
from bench.report import write_json
from tracker_client import Api
from tracker_client._history import Columns, stream_request
from tracker_proto.v1 import experiments_pb2 as ex
from tracker_proto.v1 import experiments_pb2_grpc, query_pb2, query_pb2_grpc

TARGET_POINTS_PER_S = 10_000_000
CHANNEL_OPTIONS = [("grpc.max_send_message_length", 64 << 20),
                   ("grpc.max_receive_message_length", 64 << 20)]


def log_run(address: str, points: int, keys: int) -> tuple[str, list[str], float]:
    """Create a run and stream ``points`` points into it, ``keys`` keys of equal length."""
    channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    stub = experiments_pb2_grpc.ExperimentServiceStub(channel)
    exp = stub.CreateExperiment(ex.CreateExperimentRequest(name="bench-export",
                                                           get_if_exists=True)).experiment
    run_id = str(stub.CreateRun(ex.CreateRunRequest(experiment_id=exp.experiment_id,
                                                    name="export")).run.run_id)
    names = [f"m{i}" for i in range(keys)]
    per_key = points // keys
    t0 = time.perf_counter()
    for name in names:
        _ingest_series(channel, run_id, name, per_key, 50_000, writer=f"export-{name}")
    elapsed = time.perf_counter() - t0
    channel.close()
    return run_id, names, elapsed


def _timed(fn: Callable[[], int], repeats: int) -> dict[str, float]:
    rates, seconds = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn()
        dt = time.perf_counter() - t0
        seconds.append(dt)
        rates.append(n / dt)
    return {"best_points_per_s": round(max(rates)), "median_points_per_s":
            round(statistics.median(rates)), "best_s": round(min(seconds), 3)}


def measure(address: str, run_id: str, keys: list[str], points: int, repeats: int
            ) -> dict[str, Any]:
    """Time the five read paths."""
    import pandas  # noqa: F401  # imported once here, not inside the first timed read

    api = Api(server=address)
    channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    query = query_pb2_grpc.MetricsQueryServiceStub(channel)

    def api_numpy() -> int:
        cols = api.history(run_id, keys, as_frame=False)
        assert cols["step"].shape[0] == points, cols["step"].shape
        return int(cols["step"].shape[0])

    def api_pandas() -> int:
        frame = api.history(run_id, keys)
        assert len(frame) == points
        return len(frame)

    def stream(packed: bool) -> int:
        n = 0
        for key in keys:
            req = stream_request(run_id, key, None, None, None)
            req.packed = packed
            for msg in query.StreamMetricSeries(req):
                n += len(msg.packed_steps) // 8 if packed else len(msg.steps)
        return n

    raw: list[bytes] = []
    raw_stub: Any = channel.unary_stream(
        "/tracker.v1.MetricsQueryService/StreamMetricSeries",
        request_serializer=query_pb2.StreamMetricSeriesRequest.SerializeToString,
        response_deserializer=None)
    for payload in raw_stub(stream_request(run_id, keys[0], None, None, None)):
        raw.append(payload)

    def client_decode() -> int:
        cols = Columns()
        parse = query_pb2.StreamMetricSeriesResponse.FromString
        for payload in raw:
            cols.add_stream_message(keys[0], parse(payload))
        return int(cols.arrays()["step"].shape[0])

    out = {
        "api_numpy": _timed(api_numpy, repeats),
        "api_pandas": _timed(api_pandas, repeats),
        "stream_only": _timed(lambda: stream(True), repeats),
        "stream_only_repeated": _timed(lambda: stream(False), repeats),
        "client_decode": _timed(client_decode, max(repeats, 5)),
    }
    api.close()
    channel.close()
    return out


def main(argv: list[str] | None = None) -> int:
    """Log, read, print and write JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default="bench/results/export.json", metavar="PATH")
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL to use (default: DATABASE_URL, else an embedded one)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    with Database(args.database_url) as db:
        server = ServerProcess(db.conninfo).start()
        try:
            print(f"logging {args.points:,} points ...", file=sys.stderr)
            run_id, keys, ingest_s = log_run(server.address, args.points, args.keys)
            total = len(keys) * (args.points // len(keys))
            print("reading ...", file=sys.stderr)
            figures = measure(server.address, run_id, keys, total, args.repeats)
        finally:
            server.stop()
    best = figures["api_numpy"]["best_points_per_s"]
    result = {
        "benchmark": "export",
        "points": total, "keys": len(keys), "repeats": args.repeats,
        "ingest_s": round(ingest_s, 2),
        "ingest_points_per_s": round(total / ingest_s),
        **figures,
        "target_points_per_s": TARGET_POINTS_PER_S,
        "meets_target": best >= TARGET_POINTS_PER_S,
        "loadavg_1m_at_start": load_before,
        "environment": environment_info(),
        "elapsed_s": round(time.perf_counter() - t0, 1),
    }
    write_json(args.json, result)
    for name in ("api_numpy", "api_pandas", "stream_only", "stream_only_repeated",
                 "client_decode"):
        f = figures[name]
        print(f"{name:<20} best {f['best_points_per_s'] / 1e6:6.2f} M points/s  "
              f"median {f['median_points_per_s'] / 1e6:6.2f} M points/s")
    print(f"target {TARGET_POINTS_PER_S / 1e6:.0f} M points/s: "
          f"{'met' if result['meets_target'] else 'NOT met'}; JSON in {args.json}")
    return 0
