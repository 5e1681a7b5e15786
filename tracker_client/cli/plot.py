"""``tracker plot RUN... --key loss -o loss.png``: one key across runs, as a PNG."""

from __future__ import annotations

import argparse
from typing import Any

from tracker_client import _enums
from tracker_client.cli._common import Client, CliError, command_parser, print_json
from tracker_proto.v1 import query_pb2 as q

PLOT_EXTRA_MESSAGE = "plotting needs matplotlib: pip install 'tracker[plot]'"


def register(sub: Any) -> None:
    """Add ``plot``."""
    parser = command_parser(sub, "plot", "plot one metric of runs into a PNG file")
    parser.add_argument("runs", metavar="RUN", nargs="+",
                        help="run ids, unique id prefixes or run names")
    parser.add_argument("--key", "-k", required=True, help="metric key")
    parser.add_argument("-o", "--output", required=True, help="PNG file to write")
    parser.add_argument("--points", type=int, default=2000, help="points per line (LTTB)")
    parser.add_argument("--aggregate", choices=sorted(_enums.RANK_AGGREGATION),
                        default="per_rank",
                        help="per_rank: one line per rank (default); otherwise one line per "
                             "run, aggregated across its ranks")
    parser.add_argument("--logy", action="store_true", help="logarithmic y axis")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, client: Client) -> int:
    """Fetch downsampled series and draw them (matplotlib, Agg backend: no display)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # matplotlib is an optional extra
        raise CliError(PLOT_EXTRA_MESSAGE) from exc
    aggregation = _enums.RANK_AGGREGATION[args.aggregate]
    run_ids = client.run_ids(args.runs)
    resp = client.call(client.query.GetMetricSeries, q.GetMetricSeriesRequest(
        run_ids=run_ids, keys=[args.key], max_points=args.points,
        downsampling=q.DOWNSAMPLING_LTTB, aggregation=aggregation))
    if not resp.series:
        raise CliError(f"none of the runs has points of {args.key!r}")
    names = {}
    runs = client.call(client.query.CompareRuns, q.CompareRunsRequest(run_ids=run_ids)).runs
    for r in runs:
        names[r.run_id] = r.name or r.run_id[:8]
    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    ranks = {s.run_id: 0 for s in resp.series}
    for s in resp.series:
        ranks[s.run_id] += 1
    for s in resp.series:
        label = names.get(s.run_id, s.run_id[:8])
        if ranks[s.run_id] > 1:
            label += f" rank {s.rank}"
        ax.plot(list(s.steps), list(s.values), label=label, linewidth=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel(args.key)
    if args.logy:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(args.output, format="png")
    plt.close(fig)
    if args.json:
        print_json({"output": args.output, "series": len(resp.series)})
    else:
        print(f"wrote {args.output} ({len(resp.series)} lines)")
    return 0
