"""``tracker best EXP --metric val_acc --max``: rank runs by a metric."""

from __future__ import annotations

import argparse
from typing import Any

from tracker_client import _enums
from tracker_client._api_types import Goal, Ranking
from tracker_client._artifact_types import Artifact, nearest
from tracker_client.cli._common import (
    RUN_STATUS,
    Client,
    command_parser,
    print_json,
    print_table,
    to_dict,
)
from tracker_client.cli.artifacts import run_artifacts
from tracker_proto.v1 import query_pb2 as q

_ON = _enums.SUMMARY_FIELD


def register(sub: Any) -> None:
    """Add ``best``."""
    parser = command_parser(sub, "best", "rank the runs of experiments by a metric")
    parser.add_argument("experiments", metavar="EXP", nargs="+", help="experiment ids or names")
    parser.add_argument("--metric", "-m", required=True, help="metric key, e.g. val_acc")
    # Neither: the goal the runs defined with run.define_metric(key, goal=...).
    goal = parser.add_mutually_exclusive_group()
    goal.add_argument("--max", dest="maximize", action="store_true", help="larger is better")
    goal.add_argument("--min", dest="maximize", action="store_false", help="smaller is better")
    parser.add_argument("--on", choices=sorted(_ON), default="last",
                        help="summary value to rank by (default: last)")
    parser.add_argument("--limit", type=int, default=10, help="how many runs")
    parser.add_argument("--filter", default="", help="restrict candidates (filter language)")
    parser.add_argument("--checkpoint", action="store_true",
                        help="also show each run's checkpoint nearest its best step")
    parser.set_defaults(func=run, maximize=None)


def run(args: argparse.Namespace, client: Client) -> int:
    """Print the ranking."""
    req = q.GetBestRunsRequest(
        experiment_ids=[client.experiment_id(e) for e in args.experiments],
        key=args.metric,
        goal=(q.GOAL_UNSPECIFIED if args.maximize is None
              else q.GOAL_MAXIMIZE if args.maximize else q.GOAL_MINIMIZE),
        on=_ON[args.on],
        limit=args.limit,
        filter=args.filter,
    )
    resp = client.call(client.query.GetBestRuns, req)
    ranked = resp.runs
    asked: Goal | None = None if args.maximize is None else "max" if args.maximize else "min"
    ranking = Ranking.from_proto(resp, asked)
    checkpoints = ([_checkpoint(client, r.run_id, r.step) for r in ranked]
                   if args.checkpoint else [])
    if args.json:
        # Still a list (what scripts read); each entry says which goal ranked.
        entries = [to_dict(r) | {"mode": ranking.mode, "mode_source": ranking.mode_source}
                   for r in ranked]
        for entry, ckpt in zip(entries, checkpoints, strict=False):
            entry["checkpoint"] = ckpt.row() if ckpt is not None else None
        print_json(entries)
        return 0
    headers = ["#", "RUN", "NAME", "STATUS", f"{args.metric} ({args.on})", "STEP"]
    table: list[list[Any]] = [
        [i + 1, r.run_id, r.run_name, RUN_STATUS.get(r.status, "?"), r.value, r.step]
        for i, r in enumerate(ranked)]
    if args.checkpoint:
        headers += ["CKPT STEP", "CHECKPOINT"]
        for line, ckpt in zip(table, checkpoints, strict=True):
            line += ["-", "-"] if ckpt is None else [ckpt.step, ckpt.uri]
    print_table(headers, table)
    print(ranked_by(ranking))
    return 0


def ranked_by(ranking: Ranking) -> str:
    """The line under the table that says which goal ranked the runs."""
    if ranking.mode is None:  # a server that predates the answer's goal
        return "ranked by the goal the runs defined"
    direction = "largest first" if ranking.mode == "max" else "smallest first"
    source = "defined by the runs" if ranking.mode_source == "runs" else "as requested"
    return f"ranked by {ranking.mode} ({direction}), {source}"


def _checkpoint(client: Client, run_id: str, step: int) -> Artifact | None:
    """The run's checkpoint nearest ``step``."""
    return nearest(run_artifacts(client, run_id, "checkpoint"), step)
