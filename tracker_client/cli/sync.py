"""``tracker sync PATH``: upload spools written offline or left by crashed jobs."""

from __future__ import annotations

import argparse
from typing import Any

from tracker_client._sync import add_arguments, run_args
from tracker_client.cli._common import Client, command_parser


def register(sub: Any) -> None:
    """Add ``sync``."""
    parser = command_parser(sub, "sync", "upload offline or left-over spools (exactly once)")
    add_arguments(parser, with_globals=False)
    parser.set_defaults(func=run, needs_server=False)


def run(args: argparse.Namespace, client: Client | None) -> int:
    """Deliver every spool under PATH; the server is --server, else each spool's own.

    The CLI's --tls-ca, --timeout and --json apply; sync makes its own channels (one per
    server the spools name), so the shared client is not used."""
    return run_args(args)
