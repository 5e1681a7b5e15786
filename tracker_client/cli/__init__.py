"""``tracker``: the command line for people.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds
its parser and sets ``func`` (called with the parsed args and a ``Client``, returning
an exit code). Add a module to ``COMMANDS`` to add a subcommand.

Server address and API key come from ``--server`` / ``--api-key`` or the
``TRACKER_SERVER`` / ``TRACKER_API_KEY`` environment variables.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

import grpc

import tracker_client
from tracker_client.cli import (
    artifacts,
    best,
    compare,
    completion,
    experiments,
    imports,
    metrics,
    plot,
    runs,
    slurm,
    sync,
)
from tracker_client.cli._common import Client, CliError, add_global_options

COMMANDS: list[ModuleType] = [experiments, runs, best, compare, metrics, plot, sync, slurm, imports,
                              completion, artifacts]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="tracker",
        description="Browse experiments, runs and metrics of a tracker server.",
    )
    parser.add_argument("--version", action="version",
                        version=f"tracker {tracker_client.__version__}")
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tracker`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if not getattr(args, "needs_server", True):
            return int(args.func(args, None))
        with Client.from_args(args) as client:
            return int(args.func(args, client))
    except CliError as exc:
        print(f"tracker: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        code = exc.code()
        detail = exc.details() or ""
        if code == grpc.StatusCode.UNAVAILABLE:
            print(f"tracker: cannot reach the server at {args.server or 'the default address'} "
                  f"({detail}); set --server or TRACKER_SERVER", file=sys.stderr)
        else:
            print(f"tracker: {code.name}: {detail}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `tracker ... | head`
        return 0


__all__ = ["COMMANDS", "build_parser", "main"]
