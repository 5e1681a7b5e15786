"""Client options: one frozen dataclass, every field documented with its unit."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from tracker_client._spool import FULL_POLICIES, FullPolicy, SpoolOptions

Sender = Literal["thread", "process", "auto"]
SENDERS: tuple[Sender, ...] = ("thread", "process", "auto")


@dataclass(frozen=True)
class Options:
    """Delivery and spool tuning. The defaults suit training jobs; tests shrink them."""

    batch_points: int = 1000
    """A batch is cut as soon as it holds this many points."""
    max_batch_points: int = 100_000
    """Upper bound of one batch (~2 MiB on the wire, far below the server's 16 MiB)."""
    flush_interval_s: float = 0.1
    """A non-empty partial batch is cut this long after its first point."""
    max_queue_records: int = 1_000_000
    """log() records waiting for the batcher; beyond it log() drops (counted), so memory
    stays bounded even if the batcher thread were starved."""
    max_inflight_bytes: int = 32 << 20
    """Sent-but-unacknowledged bytes before the stream waits for acks."""
    spool_dir: Path | None = None
    """Root of the on-disk spool; default ``$TRACKER_SPOOL_DIR`` or ``~/.cache/tracker/spool``."""
    spool_max_bytes: int = 1 << 30
    """Disk the spool of one writer may use."""
    spool_full_policy: FullPolicy = "drop_new"
    """When the spool is full: ``drop_new`` refuses new batches (keeps the oldest data),
    ``drop_oldest`` evicts the oldest unacknowledged segment (keeps the newest data).
    Either way the loss is counted in ``run.stats.points_dropped``."""
    spool_segment_bytes: int = 16 << 20
    """Size of one spool file; space is freed a segment at a time."""
    spool_cache_bytes: int = 64 << 20
    """Unacknowledged batches also kept in memory, so resends rarely read the disk."""
    spool_fsync: bool = False
    """fsync every batch: survives a machine crash, costs throughput. Without it a killed
    process still loses nothing (the page cache keeps what was written)."""
    spool_tail_bytes: int = 32 << 20
    """Size of the memory-mapped tail that log() writes into (preallocated on the spool's
    disk; at least 64 KiB). It survives a killed process, so the next start (or ``tracker
    sync``) delivers even the records not yet cut into a batch. It is also the bound of
    the log() queue: when the batcher is this far behind, log() drops (counted)."""
    backoff_initial_s: float = 0.1
    """First reconnect delay (doubled per failure, with jitter)."""
    backoff_max_s: float = 10.0
    """Longest reconnect delay."""
    rpc_timeout_s: float = 10.0
    """Deadline of unary calls (create run, params, tags, finish)."""
    init_timeout_s: float = 5.0
    """How long init() tries to reach the server before continuing offline."""
    exit_timeout_s: float = 10.0
    """Bound of the flush that runs at interpreter exit (``$TRACKER_EXIT_TIMEOUT_S``)."""
    system_metrics_interval_s: float | None = 10.0
    """Period of ``sys/...`` metrics (CPU, memory, GPU); None disables them."""
    recover_orphans: bool = True
    """At init, deliver spools left by crashed processes for the same server."""
    wall_time_resolution_ns: int = 1_000_000
    """Resolution of the wall times the client stamps from its own clock (``log()``
    without ``wall_time``, ``log_series``, system metrics): 1 ms by default, as MLflow
    and Prometheus store them; 1000 for microseconds, 1 for the clock's nanoseconds.
    Finer stamps cost disk: the digits below a training loop's own jitter do not
    compress (default ingest bench: ~0.4 bytes/point more at microseconds, ~1 at
    nanoseconds). A ``wall_time`` given to ``log()`` is kept to the microsecond."""

    sender: Sender = "auto"
    """Where log()'s records are batched, spooled and streamed (``$TRACKER_SENDER``):
    ``thread``, background threads of the training process; ``process``, a sender
    process of its own (one per training process); ``auto``, threads until they fall
    behind (a sixteenth of the tail waits), then a sender process. Threads share the
    training loop's GIL, so a loop that stays in Python waits for them now and then and,
    logging fast enough, outruns them (see docs/client.md, "The sender process"); the
    process costs one more interpreter (see docs/client.md) and ~0.2 s to start,
    during which log() uses the threads."""

    def __post_init__(self) -> None:
        if self.sender not in SENDERS:
            raise ValueError(f"sender must be one of {', '.join(SENDERS)}, "
                             f"got {self.sender!r}")
        if not 1 <= self.wall_time_resolution_ns <= 1_000_000_000:
            raise ValueError("wall_time_resolution_ns must be 1..1000000000 (1 ns..1 s), "
                             f"got {self.wall_time_resolution_ns!r}")
        if self.spool_full_policy not in FULL_POLICIES:
            raise ValueError(f"spool_full_policy must be one of {', '.join(FULL_POLICIES)}, "
                             f"got {self.spool_full_policy!r}")

    def spool(self) -> SpoolOptions:
        """The spool part of these options."""
        return SpoolOptions(max_bytes=self.spool_max_bytes, policy=self.spool_full_policy,
                            segment_bytes=self.spool_segment_bytes,
                            cache_bytes=self.spool_cache_bytes, fsync=self.spool_fsync,
                            tail_bytes=self.spool_tail_bytes,
                            max_batch_points=self.max_batch_points)

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON values (paths as strings), for the sender process."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = str(v) if isinstance(v, Path) else v
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Options:
        """The inverse of :meth:`to_json` (unknown fields ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("spool_dir") is not None:
            values["spool_dir"] = Path(values["spool_dir"])
        return cls(**values)
