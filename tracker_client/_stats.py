"""Delivery counters: mutable inside the client, a frozen snapshot for users."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

ACK_SAMPLES = 10_000
"""Send-to-ack times kept for ``RunStats.ack_latencies_ms`` (most recent batches)."""


@dataclass
class DeliveryStats:
    """Live counters. Each counter is written by one thread only, so plain ints suffice;
    ``state`` and ``last_error`` are whole-value assignments by the delivery threads.
    Readers may see a value a moment old."""

    points_logged: int = 0
    points_spooled: int = 0
    points_invalid: int = 0
    points_rejected: int = 0
    batches_sent: int = 0
    batches_rejected: int = 0
    reconnects: int = 0
    slow_downs: int = 0
    last_error: str = ""
    state: str = "starting"
    ack_ms: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=ACK_SAMPLES))
    """Send-to-ack time of each acknowledged batch, ms (first send to the covering ack)."""


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
    batches_sent: int
    """Batches sent on the stream, resends after a reconnect included."""
    batches_rejected: int
    """Batches the server refused (their points are in ``points_rejected``)."""
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
    ops_failed: int
    """Params/tags/status changes the server refused for good (not retried; the
    messages are in ``DeliveryReport.ops_failed``)."""
    state: str
    """``offline`` (no run yet / offline mode), ``connecting``, ``streaming``, ``closed``,
    or ``failed`` (a non-retryable error; see last_error)."""
    last_error: str
    """Most recent delivery error, empty if none."""
    ack_latencies_ms: tuple[float, ...] = ()
    """Send-to-ack times of the most recent acknowledged batches (up to 10,000), ms:
    from a batch's first send to the ack that covers it (commit included)."""
    sender: str = "thread"
    """Where ``log()``'s records go now: ``thread`` (this process's batcher) or
    ``process`` (the sender process; see ``Options.sender``)."""

    def ack_percentile_ms(self, q: float) -> float | None:
        """The ``q``-th percentile (0-100) of ``ack_latencies_ms``; None before any ack."""
        if not self.ack_latencies_ms:
            return None
        ordered = sorted(self.ack_latencies_ms)
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]
