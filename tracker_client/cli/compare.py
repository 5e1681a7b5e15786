"""``tracker compare RUN RUN...``: params and metrics side by side."""

from __future__ import annotations

import argparse
from typing import Any

from tracker_client.cli._common import Client, command_parser, print_json, print_table, to_dict
from tracker_proto.v1 import query_pb2 as q


def register(sub: Any) -> None:
    """Add ``compare``."""
    parser = command_parser(sub, "compare", "compare runs: params and metrics side by side")
    parser.add_argument("runs", metavar="RUN", nargs="+",
                        help="run ids, unique id prefixes or run names")
    parser.add_argument("--diff", action="store_true", help="only rows that differ")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, client: Client) -> int:
    """Print the comparison; '*' marks rows whose values differ."""
    req = q.CompareRunsRequest(run_ids=client.run_ids(args.runs))
    resp = client.call(client.query.CompareRuns, req)
    if args.json:
        print_json(to_dict(resp))
        return 0
    names = [r.name or r.run_id[:8] for r in resp.runs]
    print_table(
        ["", "PARAM", *names],
        [["*" if p.differs else "", p.key, *[c.value if c.present else None for c in p.cells]]
         for p in resp.params if p.differs or not args.diff],
    )
    print()
    print_table(
        ["", "METRIC (last)", *names],
        [["*" if m.differs else "", m.key,
          *[c.summary.last_value if c.present else None for c in m.cells]]
         for m in resp.metrics if m.differs or not args.diff],
    )
    return 0
