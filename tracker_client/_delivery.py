"""One spool and everything that empties it: run attachment, stream, control ops.

Used for the live writer of a :class:`~tracker_client.Run` and, with ``drain_only``,
for spools left behind by crashed or offline processes (recovery, ``tracker sync``).
When the run does not exist yet (the server was down at init, or the spool was
written offline) an attacher thread retries ``CreateRun`` with back-off; the run key
in the spool's meta makes that idempotent, so every rank and every retry lands in
the same run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import grpc

from tracker_client._clock import Backoff
from tracker_client._control import ControlQueue
from tracker_client._meta import SpoolMeta
from tracker_client._options import Options
from tracker_client._rpc import RETRYABLE_CODES, Metadata, RunRef, create_run
from tracker_client._spool import Spool
from tracker_client._stats import DeliveryStats
from tracker_client._stream import StreamSender
from tracker_proto.v1 import ingest_pb2

log = logging.getLogger("tracker_client")

RETRY_PREFIXES = tuple(f"{code.name}:" for code in RETRYABLE_CODES)


def ref_from_meta(meta: SpoolMeta) -> RunRef | None:
    """The run a spool belongs to, when it was attached already."""
    if not meta.run_id:
        return None
    return RunRef(meta.run_id, meta.experiment_id, meta.attempt, meta.run_name)


class Delivery:
    """Attach + stream + control for one spool."""

    def __init__(self, spool: Spool, channel: grpc.Channel | None, metadata: Metadata,
                 options: Options, stats: DeliveryStats, *, drain_only: bool = False) -> None:
        """``channel`` None means offline: only spool, never send."""
        self.spool = spool
        self.stats = stats
        self._channel = channel
        self._metadata = metadata
        self._opt = options
        self.ref: RunRef | None = ref_from_meta(spool.meta)
        self.sender = (StreamSender(
            channel, spool, stats, metadata=metadata,
            backoff=Backoff(options.backoff_initial_s, options.backoff_max_s),
            max_inflight_bytes=options.max_inflight_bytes, drain_only=drain_only,
        ) if channel is not None else None)
        self.control = ControlQueue(spool, channel, metadata, options.rpc_timeout_s, stats,
                                    Backoff(options.backoff_initial_s, options.backoff_max_s))
        self.attached = threading.Event()
        self._stop = threading.Event()
        self._attacher: threading.Thread | None = None
        self.fatal: str = ""
        self.on_attach: list[Callable[[RunRef], None]] = []
        """Called (from the attaching thread) once the run exists."""

    def start(self) -> None:
        """Begin delivering (attach first when the run is not known yet)."""
        if self._channel is None:
            self.stats.state = "offline"
            return
        if self.ref is not None:
            self.attach(self.ref)
            return
        self.stats.state = "offline"
        self._attacher = threading.Thread(target=self._attach_loop, name="tracker-attach",
                                          daemon=True)
        self._attacher.start()

    def attach(self, ref: RunRef) -> None:
        """The run exists: record it in the spool and start the stream and control ops."""
        self.ref = ref
        meta = self.spool.update_meta(lambda m: replace(
            m, run_id=ref.run_id, experiment_id=ref.experiment_id, attempt=ref.attempt,
            run_name=ref.name))
        if self.sender is not None:
            self.sender.attach(ingest_pb2.Open(
                run_id=ref.run_id, writer_id=meta.writer_id, rank=meta.rank,
                attempt=ref.attempt))
        self.control.attach(ref)
        self.stats.state = "connecting"
        self.attached.set()
        for callback in self.on_attach:
            callback(ref)

    def _attach_loop(self) -> None:
        assert self._channel is not None
        backoff = Backoff(self._opt.backoff_initial_s, self._opt.backoff_max_s)
        while not self._stop.is_set():
            try:
                ref = create_run(self._channel, self.spool.meta, self._metadata,
                                 self._opt.rpc_timeout_s)
            except grpc.RpcError as exc:
                self.stats.last_error = f"{exc.code().name}: {exc.details()}"
                if exc.code() not in RETRYABLE_CODES:
                    self.fatal = self.stats.last_error
                    self.stats.state = "failed"
                    log.error("tracker_client: cannot create the run (%s); points stay in %s",
                              self.fatal, self.spool.path)
                    return
                self._stop.wait(backoff.next_delay())
                continue
            if self.stats.last_error.startswith(RETRY_PREFIXES):
                self.stats.last_error = ""  # reachable now: the attach error is history
            if not self._stop.is_set():
                log.info("tracker_client: server reachable, run %s attached", ref.run_id)
                self.attach(ref)
            return

    @property
    def pending_ops(self) -> int:
        """Control ops not delivered yet."""
        return self.control.pending

    def wait_delivered(self, deadline: float) -> bool:
        """Wait until every spooled batch and op is delivered (or ``deadline``)."""
        while time.monotonic() < deadline:
            if self.fatal:
                return False
            if (self.attached.is_set() and self.spool.pending_batches == 0
                    and self.control.pending == 0):
                return True
            if self.sender is not None and self.sender.fatal is not None:
                return False
            if self.attached.is_set() and self.sender is not None:
                self.sender.wait_acked(self.spool.last_seq, min(deadline,
                                                                time.monotonic() + 0.1))
            else:
                self._stop.wait(0.02)
        return (self.attached.is_set() and self.spool.pending_batches == 0
                and self.control.pending == 0)

    def close(self, deadline: float) -> bool:
        """Deliver until ``deadline``, then stop every thread. True when all is delivered."""
        done = False
        if self.sender is not None and self.attached.is_set():
            done = self.sender.close(deadline) and self.control.wait(
                self.control.submitted, deadline)
        self._stop.set()
        grace = max(0.05, deadline - time.monotonic())
        if self.sender is not None:
            self.sender.stop(grace)
        self.control.stop()
        if self._attacher is not None:
            self._attacher.join(grace)
        return done and self.spool.pending_batches == 0 and self.control.pending == 0
