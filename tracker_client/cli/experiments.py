"""``tracker experiments ls``: list experiments."""

from __future__ import annotations

import argparse
from typing import Any

from tracker_client import _enums
from tracker_client.cli._common import (
    EXPERIMENT_STATUS,
    Client,
    command_parser,
    print_json,
    print_table,
    to_dict,
    when,
)
from tracker_proto.v1 import experiments_pb2 as ex

_STATUS = _enums.EXPERIMENT_STATUS


def register(sub: Any) -> None:
    """Add ``experiments`` (alias ``exp``) with its ``ls`` action."""
    parser = command_parser(sub, "experiments", "list experiments")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    ls = command_parser(actions, "ls", "list experiments, newest first")
    ls.add_argument("--owner", help="only this owner's experiments")
    ls.add_argument("--status", choices=sorted(_STATUS), action="append",
                    help="only these statuses (repeatable; default: all but archived)")
    ls.add_argument("--prefix", default="", help="only names starting with this")
    ls.add_argument("--limit", type=int, default=50, help="most experiments to show")
    ls.set_defaults(func=run_ls)


def run_ls(args: argparse.Namespace, client: Client) -> int:
    """List experiments, following pages up to --limit."""
    req = ex.ListExperimentsRequest(
        owner=args.owner or "",
        statuses=[_STATUS[s] for s in args.status or []],
        name_prefix=args.prefix,
        page_size=min(max(args.limit, 1), 1000),
    )
    found = client.paginate(client.experiments.ListExperiments, req,
                            lambda page: page.experiments, args.limit)
    if args.json:
        print_json([to_dict(e) for e in found])
        return 0
    print_table(
        ["ID", "NAME", "OWNER", "STATUS", "CREATED"],
        [[e.experiment_id, e.name, e.owner or "-", EXPERIMENT_STATUS.get(e.status, "?"),
          when(e.created_at)] for e in found],
    )
    return 0
