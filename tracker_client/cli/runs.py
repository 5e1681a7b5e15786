"""``tracker runs ls EXP``, ``tracker runs show RUN`` and ``tracker runs finish``."""

from __future__ import annotations

import argparse
from typing import Any

from tracker_client.cli import slurm
from tracker_client.cli._common import (
    RUN_STATUS,
    Client,
    CliError,
    command_parser,
    print_json,
    print_table,
    to_dict,
    when,
)
from tracker_proto.v1 import experiments_pb2 as ex
from tracker_proto.v1 import query_pb2 as q


def register(sub: Any) -> None:
    """Add ``runs`` with ``ls``, ``show`` and ``finish``."""
    parser = command_parser(sub, "runs", "list or show runs")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    ls = command_parser(actions, "ls", "list the runs of an experiment (id or name)")
    ls.add_argument("experiment", metavar="EXP", nargs="?",
                    help="experiment id or name (optional with --slurm-job-id)")
    ls.add_argument("--slurm-job-id", help="only the runs of this SLURM job (in every "
                    "experiment unless EXP is given)")
    ls.add_argument("--owner", help="owner of the experiment, when looking up by name")
    ls.add_argument("--filter", default="",
                    help='filter expression, e.g. \'params.lr < 0.01 and status = "finished"\'')
    ls.add_argument("--order-by", action="append", default=[],
                    help="sort key, e.g. 'metrics.val_acc.max desc' (repeatable)")
    ls.add_argument("--limit", type=int, default=50, help="most runs to show")
    ls.set_defaults(func=run_ls)
    show = command_parser(actions, "show", "show one run: params, tags, latest metrics")
    show.add_argument("run", metavar="RUN", help="run id, unique id prefix or run name")
    show.set_defaults(func=run_show)
    finish = command_parser(actions, "finish", "end a running run, or every running run "
                            "of a SLURM job")
    finish.add_argument("run", metavar="RUN", nargs="?",
                        help="run id, unique id prefix or run name")
    finish.add_argument("--slurm-job-id", help="every running run of this SLURM job")
    finish.add_argument("--status", required=True, choices=sorted(slurm.STATUS_NUMBER))
    finish.set_defaults(func=run_finish)


def run_ls(args: argparse.Namespace, client: Client) -> int:
    """Search the experiment's runs, following pages up to --limit."""
    filter_text = args.filter
    if args.slurm_job_id:
        clause = slurm.job_filter(args.slurm_job_id)
        filter_text = f"({filter_text}) and {clause}" if filter_text else clause
    if args.experiment:
        exp_id = client.experiment_id(args.experiment, args.owner)
        req = ex.SearchRunsRequest(experiment_ids=[exp_id], filter=filter_text,
                                   order_by=args.order_by,
                                   page_size=min(max(args.limit, 1), 1000))
        found = client.paginate(client.experiments.SearchRuns, req, lambda page: page.runs,
                                args.limit)
    elif args.slurm_job_id:
        found = slurm.search_everywhere(client, filter_text, args.limit)
    else:
        raise CliError("give an experiment (EXP), or --slurm-job-id")
    if args.json:
        print_json([to_dict(r) for r in found])
        return 0
    param_keys = sorted({k for r in found for k in r.params})[:4]
    print_table(
        ["ID", "NAME", "STATUS", "CREATED", *param_keys],
        [[r.run_id, r.name, RUN_STATUS.get(r.status, "?"), when(r.created_at),
          *[r.params.get(k) for k in param_keys]] for r in found],
    )
    return 0


def run_show(args: argparse.Namespace, client: Client) -> int:
    """One run with params, tags and latest metric values."""
    run_id = client.run_id(args.run)
    run = client.call(client.experiments.GetRun, ex.GetRunRequest(run_id=run_id)).run
    latest = client.call(client.query.GetLatestMetrics,
                         q.GetLatestMetricsRequest(run_ids=[run_id])).runs[0]
    if args.json:
        print_json({"run": to_dict(run), "metrics": [to_dict(m) for m in latest.metrics]})
        return 0
    print(f"run       {run.run_id}")
    print(f"name      {run.name}")
    print(f"status    {RUN_STATUS.get(run.status, '?')}")
    print(f"created   {when(run.created_at)}")
    print(f"ended     {when(run.ended_at) if run.HasField('ended_at') else '-'}")
    print(f"attempt   {run.attempt}")
    if run.slurm_job_id:
        print(f"slurm     {run.slurm_job_id}")
    print()
    print_table(["PARAM", "VALUE"], sorted(run.params.items()))
    if run.tags:
        print()
        print_table(["TAG", "VALUE"], sorted(run.tags.items()))
    if run.summary:
        print()
        print_table(["SUMMARY", "VALUE"], sorted(run.summary.items()))
    print()
    print_table(
        ["METRIC", "LAST", "STEP", "MIN", "MAX", "POINTS", "GOAL"],
        [[m.key, m.last_value, m.last_step,
          m.min_value if m.HasField("min_value") else None,
          m.max_value if m.HasField("max_value") else None, m.count,
          run.metric_goals.get(m.key)] for m in latest.metrics],
    )
    return 0


def run_finish(args: argparse.Namespace, client: Client) -> int:
    """FinishRun on one run, or on each running run of a SLURM job."""
    status = slurm.STATUS_NUMBER[args.status]
    if bool(args.run) == bool(args.slurm_job_id):
        raise CliError("give either RUN or --slurm-job-id")
    if args.run:
        run = client.call(client.experiments.FinishRun,
                          ex.FinishRunRequest(run_id=client.run_id(args.run),
                                              status=status)).run
        print(f"run {run.run_id} ({run.name}): {RUN_STATUS.get(run.status, '?')}")
        return 0
    runs = slurm.search_everywhere(client, slurm.job_filter(args.slurm_job_id), 10_000)
    if not runs:
        raise CliError(f"no run of SLURM job {args.slurm_job_id}")
    for run in runs:
        if run.status == ex.RUN_STATUS_RUNNING:
            client.call(client.experiments.FinishRun,
                        ex.FinishRunRequest(run_id=run.run_id, status=status))
            print(f"run {run.run_id} ({run.name}): running -> {args.status}")
        else:
            print(f"run {run.run_id} ({run.name}): already {RUN_STATUS.get(run.status, '?')}")
    return 0
