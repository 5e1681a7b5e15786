"""``tracker sync PATH``: upload spools written offline or left behind by a crash.

PATH is one spool directory or a spool root (``$TRACKER_SPOOL_DIR``). Each spool is
delivered with its own writer id and seqs, so running sync twice, or while the
original job's recovery also runs, never duplicates a point.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import grpc

from tracker_client import _env
from tracker_client._meta import read_meta
from tracker_client._options import Options
from tracker_client._recover import SyncResult, deliver_spool, find_spools
from tracker_client._rpc import make_channel
from tracker_client._run import CHANNEL_OPTIONS


def add_arguments(parser: argparse.ArgumentParser, *, with_globals: bool = True) -> None:
    """The options of ``tracker sync``; ``with_globals`` False when the CLI package
    already provides --server and --api-key."""
    parser.add_argument("path", type=Path, nargs="?", default=None,
                        help="spool directory or spool root (default: $TRACKER_SPOOL_DIR "
                             "or ~/.cache/tracker/spool)")
    if with_globals:
        parser.add_argument("--server", default=None,
                            help="server address (default: the one recorded in each spool)")
        parser.add_argument("--api-key", default=None,
                            help="API key (default $TRACKER_API_KEY)")
    parser.add_argument("--max-time", type=float, default=600.0,
                        help="seconds to spend per spool before giving up (default 600)")


def sync(root: Path | None, server: str | None = None, api_key: str | None = None,
         max_time_s: float = 600.0) -> int:
    """Deliver every spool under ``root``; 0 when all were delivered, 1 otherwise.

    Raises ValueError for a malformed client setting in the environment (TRACKER_TLS).
    """
    root = root or _env.spool_dir()
    tls = _env.tls_config()
    key = _env.api_key(api_key)
    md: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {key}"),) if key else ()
    opt = Options(system_metrics_interval_s=None, recover_orphans=False)
    results: list[SyncResult] = []
    skipped = 0
    channels: dict[str, grpc.Channel] = {}
    try:
        for path in find_spools(root):
            try:
                meta = read_meta(path)
            except (OSError, ValueError) as exc:
                print(f"{path}: unreadable meta.json ({exc}), skipped", file=sys.stderr)
                skipped += 1
                continue
            address = server or meta.server or _env.server_address(None)
            channel = channels.get(address)
            if channel is None:
                channel = channels[address] = make_channel(address, CHANNEL_OPTIONS, tls)
            result = deliver_spool(path, channel, md, opt, time.monotonic() + max_time_s)
            if result is None:
                skipped += 1
                print(f"{path}: in use by a running process, skipped", file=sys.stderr)
                continue
            results.append(result)
            status = "delivered" if result.delivered else f"INCOMPLETE ({result.error})"
            print(f"{path}: run {result.run_id or '?'}: {result.points_acked} points "
                  f"uploaded, {result.points_pending} pending: {status}")
            for failure in result.ops_failed:
                print(f"{path}: {failure}", file=sys.stderr)
    finally:
        for channel in channels.values():
            channel.close()
    if not results and not skipped:
        print(f"no spools under {root}")
    return 0 if all(r.delivered for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tracker sync`` (also ``python -m tracker_client._sync``)."""
    parser = argparse.ArgumentParser(prog="tracker sync", description=__doc__)
    add_arguments(parser)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = parser.parse_args(argv)
    try:
        return sync(args.path, args.server, args.api_key, args.max_time)
    except ValueError as exc:
        print(f"tracker sync: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
