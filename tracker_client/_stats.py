"""Delivery counters: mutable inside the client, a frozen snapshot for users."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DeliveryStats:
    """Live counters. Each is written by one thread only, so plain ints suffice;
    readers may see a value a moment old."""

    points_logged: int = 0
    points_spooled: int = 0
    batches_spooled: int = 0
    points_acked: int = 0
    points_dropped: int = 0
    points_invalid: int = 0
    points_rejected: int = 0
    batches_sent: int = 0
    batches_rejected: int = 0
    reconnects: int = 0
    slow_downs: int = 0
    last_error: str = ""
    state: str = "starting"


@dataclass(frozen=True)
class RunStats:
    """A snapshot of ``run.stats``: what was logged and where it is now."""

    points_logged: int
    """Points passed to log()/log_series()."""
    points_acked: int
    """Points the server committed (durable in PostgreSQL)."""
    points_spooled: int
    """Points written to the on-disk spool (all points pass through it)."""
    points_pending: int
    """Logged but not yet acknowledged (queued, spooled or in flight)."""
    points_dropped: int
    """Points given up: full queue or full spool (see the spool policy)."""
    points_invalid: int
    """Points refused locally for an invalid metric name."""
    points_rejected: int
    """Points the server refused (batches rejected as a whole)."""
    batches_pending: int
    """Spooled batches not yet acknowledged."""
    spool_bytes: int
    """Disk used by the spool."""
    corrupt_records: int
    """Spool records found unreadable (torn or corrupt) when the spool was reopened."""
    lag_s: float
    """Age of the oldest unacknowledged batch, seconds (0 when all is acknowledged)."""
    reconnects: int
    """Stream reconnections."""
    slow_downs: int
    """SlowDown hints received from the server."""
    state: str
    """``offline`` (no run yet / offline mode), ``connecting``, ``streaming``, ``closed``,
    or ``failed`` (a non-retryable error; see last_error)."""
    last_error: str
    """Most recent delivery error, empty if none."""
