"""Deliver spools nobody owns any more: left by a crash, a timeout, or offline mode.

``init()`` runs this in the background for spools of the same server; ``tracker sync
PATH`` runs it in the foreground. A spool is owned through its flock, so a spool of a
live process is never touched, and two recoverers never deliver the same spool.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from tracker_client._delivery import Delivery
from tracker_client._meta import META_FILE, read_meta
from tracker_client._options import Options
from tracker_client._rpc import Metadata
from tracker_client._spool import SpoolLocked
from tracker_client._stats import DeliveryStats

log = logging.getLogger("tracker_client")


@dataclass
class SyncResult:
    """Outcome of delivering one spool directory."""

    path: Path
    delivered: bool
    """Everything (batches and ops) acknowledged; the directory was removed."""
    points_acked: int = 0
    points_pending: int = 0
    run_id: str = ""
    error: str = ""
    ops_failed: tuple[str, ...] = ()
    """Params/tags/status changes the server refused for good (not retried)."""
    stats: DeliveryStats = field(default_factory=DeliveryStats)


def find_spools(root: Path) -> Iterator[Path]:
    """Spool directories at or below ``root`` (a spool itself, or a spool root)."""
    if (root / META_FILE).is_file():
        yield root
        return
    if root.is_dir():
        for meta in sorted(root.glob(f"*/{META_FILE}")):
            yield meta.parent


def deliver_spool(path: Path, channel: grpc.Channel, metadata: Metadata, options: Options,
                  deadline: float, stop: threading.Event | None = None) -> SyncResult | None:
    """Deliver one spool until done or ``deadline``; None when a live process owns it."""
    try:
        spool = options.spool().open(path)
    except SpoolLocked:
        return None
    stats = DeliveryStats()
    delivery = Delivery(spool, channel, metadata, options, stats, drain_only=True)
    result = SyncResult(path, False, stats=stats)
    try:
        if spool.counters.corrupt_records or spool.counters.torn_bytes:
            log.warning("tracker_client: spool %s: %d corrupt record(s), %d torn byte(s) "
                        "skipped", path, spool.counters.corrupt_records,
                        spool.counters.torn_bytes)
        delivery.start()
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            if delivery.wait_delivered(min(deadline, time.monotonic() + 0.2)):
                break
            if delivery.fatal or (delivery.sender is not None and delivery.sender.fatal):
                break
        delivery.close(time.monotonic())
        result.delivered = (delivery.attached.is_set() and spool.pending_batches == 0
                            and delivery.pending_ops == 0)
    finally:
        result.points_acked = spool.counters.trimmed_points - stats.points_rejected
        result.points_pending = spool.pending_points
        result.run_id = delivery.ref.run_id if delivery.ref else ""
        result.error = delivery.fatal or stats.last_error
        result.ops_failed = tuple(delivery.control.errors)
        if result.delivered:
            spool.destroy()
        else:
            spool.close()
    return result


def recover_orphans(root: Path, server: str, channel: grpc.Channel, metadata: Metadata,
                    options: Options, stop: threading.Event, time_budget_s: float = 3600.0,
                    on_result: Callable[[SyncResult], None] | None = None) -> None:
    """Deliver every unowned spool of ``server`` below ``root`` (background use)."""
    deadline = time.monotonic() + time_budget_s
    for path in find_spools(root):
        if stop.is_set():
            return
        try:
            meta = read_meta(path)
        except (OSError, ValueError):
            continue
        if meta.server != server or meta.mode == "offline":
            continue  # offline spools wait for an explicit `tracker sync`
        result = deliver_spool(path, channel, metadata, options, deadline, stop)
        if result is not None:
            log.info("tracker_client: recovered spool %s: %d points delivered%s", path,
                     result.points_acked, "" if result.delivered else " (incomplete)")
            if on_result is not None:
                on_result(result)
