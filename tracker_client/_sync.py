"""``tracker sync PATH``: upload spools written offline or left behind by a crash.

PATH is one spool directory or a spool root (``$TRACKER_SPOOL_DIR``). Each spool is
delivered with its own writer id and seqs, so running sync twice, or while the
original job's recovery also runs, never duplicates a point. Spools are delivered
``--parallel`` at a time (each on its own stream; channels are shared per server), with
a progress bar on a terminal. ``--dry-run`` reads the spools without taking them and
says what would be sent; ``--json`` prints one summary object instead of lines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from tracker_client import _env
from tracker_client._control import read_ops
from tracker_client._meta import SpoolMeta, read_meta
from tracker_client._options import Options
from tracker_client._recover import SyncResult, deliver_spool, find_spools
from tracker_client._rpc import make_channel
from tracker_client._run import CHANNEL_OPTIONS
from tracker_client._spool import LOCK_FILE, SEGMENT_SUFFIX, scan_records
from tracker_client.importers._progress import Progress

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: in-use detection is skipped
    fcntl = None  # type: ignore[assignment]

DEFAULT_PARALLEL = 4
"""Spools delivered at once: enough to overlap round trips, few enough that one node's
backlog does not open dozens of streams against the server."""
MAX_PARALLEL = 64
"""Upper bound of ``--parallel``."""


@dataclass
class SpoolOutcome:
    """What sync did (or, with ``--dry-run``, would do) with one spool."""

    path: str
    status: str
    """``delivered``, ``incomplete``, ``in_use``, ``unreadable`` or ``would_send``."""
    run_id: str = ""
    run_key: str = ""
    experiment: str = ""
    server: str = ""
    points_sent: int = 0
    """Points acknowledged by this sync (0 in a dry run)."""
    points_pending: int = 0
    """Points still in the spool (in a dry run: the points that would be sent)."""
    batches_pending: int = 0
    ops_pending: int = 0
    """Params/tags/summary/status changes not yet delivered."""
    error: str = ""
    ops_failed: list[str] = field(default_factory=list)


@dataclass
class SyncSummary:
    """Totals of one ``tracker sync``."""

    root: str
    dry_run: bool
    spools: list[SpoolOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every spool that could be taken was delivered (in-use ones are skipped)."""
        return all(s.status in ("delivered", "in_use", "would_send") for s in self.spools)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready totals and one entry per spool."""
        counts: dict[str, int] = {}
        for s in self.spools:
            counts[s.status] = counts.get(s.status, 0) + 1
        return {
            "root": self.root, "dry_run": self.dry_run, "ok": self.ok, "counts": counts,
            "points_sent": sum(s.points_sent for s in self.spools),
            "points_pending": sum(s.points_pending for s in self.spools),
            "spools": [vars(s) for s in self.spools],
        }


def add_arguments(parser: argparse.ArgumentParser, *, with_globals: bool = True) -> None:
    """The options of ``tracker sync``; ``with_globals`` False when the CLI package
    already provides --server, --api-key, --tls-ca, --timeout and --json."""
    parser.add_argument("path", type=Path, nargs="?", default=None,
                        help="spool directory or spool root (default: $TRACKER_SPOOL_DIR "
                             "or ~/.cache/tracker/spool)")
    if with_globals:
        parser.add_argument("--server", default=None,
                            help="server address (default: the one recorded in each spool)")
        parser.add_argument("--api-key", default=None,
                            help="API key (default $TRACKER_API_KEY)")
        parser.add_argument("--tls-ca", default=None,
                            help="PEM CA bundle: connect with TLS (env TRACKER_TLS_CA)")
        parser.add_argument("--timeout", type=float, default=30.0,
                            help="seconds per call (create run, params, ...; default 30)")
        parser.add_argument("--json", action="store_true", help="print a JSON summary")
    parser.add_argument("--max-time", type=float, default=600.0,
                        help="seconds to spend per spool before giving up (default 600)")
    parser.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL,
                        help=f"spools delivered at once (1..{MAX_PARALLEL}, "
                             f"default {DEFAULT_PARALLEL})")
    parser.add_argument("--dry-run", action="store_true",
                        help="only say what would be sent; send nothing, change nothing")


def sync(root: Path | None, server: str | None = None, api_key: str | None = None,
         max_time_s: float = 600.0, *, tls_ca: str | None = None, timeout_s: float = 30.0,
         parallel: int = DEFAULT_PARALLEL, dry_run: bool = False,
         as_json: bool = False) -> int:
    """Deliver every spool under ``root``; 0 when all were delivered, 1 otherwise.

    Raises ValueError for a malformed setting (TRACKER_TLS, --parallel, --timeout).
    """
    summary = run_sync(root, server, api_key, max_time_s, tls_ca=tls_ca, timeout_s=timeout_s,
                       parallel=parallel, dry_run=dry_run, echo=not as_json)
    if as_json:
        json.dump(summary.as_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not summary.spools:
        print(f"no spools under {summary.root}")
    return 0 if summary.ok else 1


def run_sync(root: Path | None, server: str | None = None, api_key: str | None = None,
             max_time_s: float = 600.0, *, tls_ca: str | None = None,
             timeout_s: float = 30.0, parallel: int = DEFAULT_PARALLEL,
             dry_run: bool = False, echo: bool = False) -> SyncSummary:
    """:func:`sync` returning the summary; ``echo`` prints one line per spool."""
    if not 1 <= parallel <= MAX_PARALLEL:
        raise ValueError(f"--parallel must be 1..{MAX_PARALLEL}, got {parallel}")
    if not timeout_s > 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {timeout_s}")
    root = root or _env.spool_dir()
    summary = SyncSummary(str(root), dry_run)
    paths = list(find_spools(root))
    printer = _Printer(echo)
    if dry_run:
        for path in paths:
            summary.spools.append(printer.show(inspect_spool(path, server)))
        return summary
    tls = _env.tls_config(tls_ca)
    key = _env.api_key(api_key)
    md: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {key}"),) if key else ()
    opt = Options(system_metrics_interval_s=None, recover_orphans=False,
                  rpc_timeout_s=timeout_s, init_timeout_s=timeout_s)
    channels: dict[str, grpc.Channel] = {}
    channels_lock = threading.Lock()

    def channel_for(address: str) -> grpc.Channel:
        with channels_lock:
            channel = channels.get(address)
            if channel is None:
                channel = channels[address] = make_channel(address, CHANNEL_OPTIONS, tls)
            return channel

    def one(path: Path) -> SpoolOutcome:
        try:
            meta = read_meta(path)
        except (OSError, ValueError) as exc:
            return SpoolOutcome(str(path), "unreadable", error=f"unreadable meta.json: {exc}")
        address = server or meta.server or _env.server_address(None)
        result = deliver_spool(path, channel_for(address), md, opt,
                               time.monotonic() + max_time_s)
        return _outcome(path, meta, address, result)

    try:
        with Progress(len(paths), "spool", "sync") as bar, \
                ThreadPoolExecutor(max_workers=parallel,
                                   thread_name_prefix="tracker-sync") as pool:
            for outcome in pool.map(one, paths):
                summary.spools.append(printer.show(outcome))
                bar.update(1)
    finally:
        for channel in channels.values():
            channel.close()
    return summary


def _outcome(path: Path, meta: SpoolMeta, address: str, result: SyncResult | None
             ) -> SpoolOutcome:
    base = SpoolOutcome(str(path), "in_use", run_id=meta.run_id, run_key=meta.run_key,
                        experiment=meta.experiment, server=address)
    if result is None:
        base.error = "in use by a running process, skipped"
        return base
    base.status = "delivered" if result.delivered else "incomplete"
    base.run_id = result.run_id or meta.run_id
    base.points_sent = result.points_acked
    base.points_pending = result.points_pending
    base.error = "" if result.delivered else result.error
    base.ops_failed = list(result.ops_failed)
    return base


def inspect_spool(path: Path, server: str | None = None) -> SpoolOutcome:
    """What delivering ``path`` would send, read without taking or changing the spool."""
    try:
        meta = read_meta(path)
    except (OSError, ValueError) as exc:
        return SpoolOutcome(str(path), "unreadable", error=f"unreadable meta.json: {exc}")
    out = SpoolOutcome(str(path), "would_send", run_id=meta.run_id, run_key=meta.run_key,
                       experiment=meta.experiment,
                       server=server or meta.server or _env.server_address(None))
    if _in_use(path):
        out.status = "in_use"
        out.error = "in use by a running process, would be skipped"
    seqs: dict[int, int] = {}
    for seg in sorted(path.glob(f"*{SEGMENT_SUFFIX}")):
        records, _, _ = scan_records(seg.read_bytes())
        for seq, _offset, _length, points, _created in records:
            if seq > meta.acked_seq:
                seqs[seq] = points
    out.batches_pending = len(seqs)
    out.points_pending = sum(seqs.values())
    out.ops_pending = max(0, len(read_ops(path)) - meta.ops_done)
    return out


def _in_use(path: Path) -> bool:
    if fcntl is None or not (path / LOCK_FILE).exists():
        return False
    fd = os.open(path / LOCK_FILE, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        # Closing the descriptor drops the probe's shared lock at once.
        with contextlib.suppress(OSError):
            os.close(fd)
    return False


class _Printer:
    """One line per spool on stdout (failed ops on stderr), unless JSON was asked for."""

    def __init__(self, echo: bool) -> None:
        self._echo = echo

    def show(self, o: SpoolOutcome) -> SpoolOutcome:
        if not self._echo:
            return o
        run = o.run_id or (f"key {o.run_key}" if o.run_key else "?")
        if o.status == "would_send":
            print(f"{o.path}: would send {o.points_pending} points in {o.batches_pending} "
                  f"batches and {o.ops_pending} ops to {o.server} (run {run}, experiment "
                  f"{o.experiment!r})")
        elif o.status in ("in_use", "unreadable"):
            print(f"{o.path}: {o.error}", file=sys.stderr)
        else:
            state = "delivered" if o.status == "delivered" else f"INCOMPLETE ({o.error})"
            print(f"{o.path}: run {run}: {o.points_sent} points uploaded, "
                  f"{o.points_pending} pending: {state}")
        for failure in o.ops_failed:
            print(f"{o.path}: {failure}", file=sys.stderr)
        return o


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tracker sync`` (also ``python -m tracker_client._sync``)."""
    parser = argparse.ArgumentParser(prog="tracker sync", description=__doc__)
    add_arguments(parser)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = parser.parse_args(argv)
    return run_args(args)


def run_args(args: argparse.Namespace) -> int:
    """Run sync from parsed arguments (standalone or as the CLI's subcommand)."""
    try:
        return sync(args.path, args.server, args.api_key, args.max_time, tls_ca=args.tls_ca,
                    timeout_s=args.timeout, parallel=args.parallel, dry_run=args.dry_run,
                    as_json=args.json)
    except ValueError as exc:
        print(f"tracker sync: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
