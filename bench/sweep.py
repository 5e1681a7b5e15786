"""``python -m bench sweep``: ingest throughput over batch sizes x stream counts.

One database and one server process serve every point of the sweep; each point uses
fresh runs (so the exactly-once check and bytes/point stay per point) and, on the
harness's own embedded database, starts from an empty chunk table after a CHECKPOINT.
The ceiling is measured first, the same way. ``--repeat N`` keeps the median of N.
Writes the figures as JSON and a PNG chart: e2e points/s against batch size, one line
per stream count, the ceiling as a horizontal line.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from bench.environment import exit_on_sigterm
from bench.ingest import (
    Harness,
    IngestParams,
    checkpoint,
    environment_info,
    run_ceiling,
    run_e2e,
)
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
    exit_on_sigterm()
    p = argparse.ArgumentParser(prog="python -m bench sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-points", type=int, nargs="+", default=list(DEFAULT_BATCHES))
    p.add_argument("--streams", type=int, nargs="+", default=list(DEFAULT_STREAMS))
    p.add_argument("--keys", type=int, default=20)
    p.add_argument("--duration", type=float, default=4.0, help="seconds per point")
    p.add_argument("--repeat", type=int, default=1, help="runs per point (median is kept)")
    p.add_argument("--transport", choices=["client", "raw"], default="raw")
    p.add_argument("--database-url", help="default DATABASE_URL, else embedded PostgreSQL")
    p.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--json", default="bench/results/sweep.json", metavar="PATH",
                   help="write the figures to this file (default: %(default)s)")
    p.add_argument("--png", default="bench/results/sweep.png", metavar="PATH",
                   help="write the chart to this file (default: %(default)s)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    base = IngestParams(keys=args.keys, duration_s=args.duration, transport=args.transport,
                        ceiling=False)
    env = dict(kv.split("=", 1) for kv in args.server_env)
    points: list[dict[str, Any]] = []
    keys = ("e2e_points_per_s", "points_sent", "points_committed", "exactly_once",
            "ack_p50_ms", "ack_p99_ms", "server_cpu_s", "postgres_cpu_s", "clients_cpu_s",
            "server_cpu_cores", "disk_bytes_per_point", "points_per_chunk",
            "other_processes_cores", "elapsed_s")
    with Harness(args.database_url, server_env=env) as h:
        own_db = h.db is not None and h.db.is_embedded
        ceilings = []
        for _ in range(args.repeat):
            checkpoint(h.conninfo, truncate=own_db)
            ceilings.append(run_ceiling(h, replace(base, streams=4, batch_points=2000),
                                        10_000_000, show_progress=not args.quiet))
        ceil = sorted(ceilings, key=lambda c: c["ceiling_points_per_s"])[len(ceilings) // 2]
        ceil["ceiling_points_per_s_all"] = [c["ceiling_points_per_s"] for c in ceilings]
        for streams in args.streams:
            for bp in args.batch_points:
                params = replace(base, streams=streams, batch_points=bp)
                reps = []
                for _ in range(args.repeat):
                    # Every point starts from an empty chunk table on the harness's
                    # own database, so later points do not pay for earlier ones' data.
                    checkpoint(h.conninfo, truncate=own_db)
                    fig = run_e2e(h, params, show_progress=not args.quiet,
                                  label=f"s={streams} b={bp}")
                    reps.append({k: fig.get(k) for k in keys})
                reps.sort(key=lambda r: float(r["e2e_points_per_s"] or 0.0))
                row = {"streams": streams, "batch_points": bp, **reps[len(reps) // 2],
                       "e2e_points_per_s_all": [r["e2e_points_per_s"] for r in reps],
                       "exactly_once": all(r["exactly_once"] is not False for r in reps)}
                points.append(row)
                print(f"streams={streams:<3} batch={bp:<6} {si(row['e2e_points_per_s'])}pts/s "
                      f"(median of {len(reps)}) exactly_once={row['exactly_once']} "
                      f"ack_p99={row['ack_p99_ms'] or 0:.0f}ms", flush=True)
    data = {"points": points, **ceil,
            "params": asdict(base) | {"server_env": env, "repeat": args.repeat},
            "environment": environment_info(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_json(args.json, data)
    chart(data, Path(args.png))
    print(f"ceiling {si(ceil.get('ceiling_points_per_s'))}pts/s; wrote {args.json}, {args.png}")
    return 0 if all(r["exactly_once"] is not False for r in points) else 1


if __name__ == "__main__":
    sys.exit(main())
