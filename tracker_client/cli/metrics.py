"""``tracker metrics RUN [--key loss]``: keys of a run, or one series as a table or
sparkline."""

from __future__ import annotations

import argparse
from typing import Any

from tracker_client.cli._common import (
    Client,
    command_parser,
    print_json,
    print_table,
    sparkline,
    to_dict,
)
from tracker_proto.v1 import query_pb2 as q


def register(sub: Any) -> None:
    """Add ``metrics``."""
    parser = command_parser(sub, "metrics", "list a run's metric keys, or show one series")
    parser.add_argument("run", metavar="RUN", help="run id, unique id prefix or run name")
    parser.add_argument("--key", "-k", help="metric key; without it, list the keys")
    parser.add_argument("--points", type=int, default=20,
                        help="points in the table (downsampled, min/max kept; default 20)")
    parser.add_argument("--start", type=int, help="first step")
    parser.add_argument("--end", type=int, help="last step")
    parser.add_argument("--sparkline", action="store_true", help="one-line chart per rank")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, client: Client) -> int:
    """List keys, or print a downsampled series."""
    run_id = client.run_id(args.run)
    if not args.key:
        keys = client.call(client.query.ListMetricKeys,
                           q.ListMetricKeysRequest(run_id=run_id)).keys
        if args.json:
            print_json([to_dict(k) for k in keys])
            return 0
        print_table(
            ["KEY", "POINTS", "FIRST", "LAST", "LAST VALUE", "MIN", "MAX", "RANKS"],
            [[k.summary.key, k.summary.count, k.summary.first_step, k.summary.last_step,
              k.summary.last_value,
              k.summary.min_value if k.summary.HasField("min_value") else None,
              k.summary.max_value if k.summary.HasField("max_value") else None,
              ",".join(map(str, k.ranks))] for k in keys],
        )
        return 0
    points = max(args.points, 60 if args.sparkline else 4)
    req = q.GetMetricSeriesRequest(run_ids=[run_id], keys=[args.key], max_points=points)
    if args.start is not None:
        req.start_step = args.start
    if args.end is not None:
        req.end_step = args.end
    series = client.call(client.query.GetMetricSeries, req).series
    if args.json:
        print_json([to_dict(s) for s in series])
        return 0
    if not series:
        print(f"(no points of {args.key!r})")
        return 0
    for s in series:
        note = f" ({len(s.steps)} of {s.total_points} points)" if s.downsampled else ""
        if args.sparkline:
            lo, hi = min(s.values), max(s.values)
            print(f"{args.key} rank {s.rank}: {sparkline(list(s.values))}  "
                  f"[{lo:.4g} .. {hi:.4g}] steps {s.steps[0]}..{s.steps[-1]}{note}")
            continue
        print(f"{args.key}, rank {s.rank}{note}")
        print_table(["STEP", "VALUE"], list(zip(s.steps, s.values, strict=True)))
    return 0
