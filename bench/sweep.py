"""``python -m bench sweep``: ingest throughput over batch sizes x stream counts.

One database and one server process serve every point of the sweep (each point uses
fresh runs, so the exactly-once check and bytes/point stay per point); the ceiling is
measured once, at the end, in the same database. Writes the figures as JSON and a PNG
chart: e2e points/s against batch size, one line per stream count, the ceiling as a
horizontal line.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench.ingest import Harness, IngestParams, environment_info, run_ceiling, run_e2e
from bench.report import si, write_json

DEFAULT_BATCHES = (100, 500, 2000, 10_000)
DEFAULT_STREAMS = (1, 2, 4)


def chart(data: dict[str, Any], path: Path) -> None:
    """Throughput vs batch size, a line per stream count, ceiling dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.6), dpi=110)
    points = data["points"]
    for streams in sorted({p["streams"] for p in points}):
        rows = sorted((p for p in points if p["streams"] == streams),
                      key=lambda p: p["batch_points"])
        ax.plot([r["batch_points"] for r in rows], [r["e2e_points_per_s"] / 1e6 for r in rows],
                marker="o", label=f"{streams} stream{'s' if streams > 1 else ''}")
    ceiling = data.get("ceiling_points_per_s")
    if ceiling:
        ax.axhline(ceiling / 1e6, color="grey", linestyle="--",
                   label="ceiling: binary COPY, no gRPC")
    ax.set_xscale("log")
    ax.set_xlabel("points per batch (client message)")
    ax.set_ylabel("committed points/s (millions)")
    params = data["params"]
    ax.set_title(f"tracker ingest, {params['keys']} keys/step, transport={params['transport']}, "
                 f"{data['environment']['cpus']} cores shared by clients + server + PostgreSQL",
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench sweep``."""
    p = argparse.ArgumentParser(prog="python -m bench sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-points", type=int, nargs="+", default=list(DEFAULT_BATCHES))
    p.add_argument("--streams", type=int, nargs="+", default=list(DEFAULT_STREAMS))
    p.add_argument("--keys", type=int, default=20)
    p.add_argument("--duration", type=float, default=4.0, help="seconds per point")
    p.add_argument("--transport", choices=["client", "raw"], default="raw")
    p.add_argument("--database-url", help="default DATABASE_URL, else embedded PostgreSQL")
    p.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--json", default="bench/results/sweep.json")
    p.add_argument("--png", default="bench/results/sweep.png")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    base = IngestParams(keys=args.keys, duration_s=args.duration, transport=args.transport,
                        ceiling=False)
    env = dict(kv.split("=", 1) for kv in args.server_env)
    points: list[dict[str, Any]] = []
    with Harness(args.database_url, server_env=env) as h:
        for streams in args.streams:
            for bp in args.batch_points:
                params = replace(base, streams=streams, batch_points=bp)
                fig = run_e2e(h, params, show_progress=not args.quiet,
                              label=f"s={streams} b={bp}")
                row = {"streams": streams, "batch_points": bp,
                       **{k: fig.get(k) for k in (
                           "e2e_points_per_s", "points_sent", "points_committed",
                           "exactly_once", "ack_p50_ms", "ack_p99_ms", "server_cpu_s",
                           "postgres_cpu_s", "clients_cpu_s", "server_cpu_cores",
                           "disk_bytes_per_point", "points_per_chunk",
                           "other_processes_cores", "elapsed_s")}}
                points.append(row)
                print(f"streams={streams:<3} batch={bp:<6} {si(row['e2e_points_per_s'])}pts/s "
                      f"exactly_once={row['exactly_once']} "
                      f"ack_p99={row['ack_p99_ms'] or 0:.0f}ms", flush=True)
        biggest = max(points, key=lambda r: r["points_sent"])
        ceil_params = replace(base, streams=biggest["streams"], batch_points=2000)
        ceil = run_ceiling(h, ceil_params, 10_000_000, show_progress=not args.quiet)
    data = {"points": points, **ceil, "params": asdict(base) | {"server_env": env},
            "environment": environment_info(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json(args.json, data)
    chart(data, Path(args.png))
    print(f"ceiling {si(ceil.get('ceiling_points_per_s'))}pts/s; wrote {args.json}, {args.png}")
    return 0 if all(r["exactly_once"] is not False for r in points) else 1


if __name__ == "__main__":
    sys.exit(main())
