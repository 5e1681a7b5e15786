"""The stream thread: deliver a spool over ``IngestService.Stream``, exactly once.

One thread per spool keeps a stream open while there is something to send. On every
(re)connect it sends Open, learns the writer's committed seq from Opened, and sends
the spooled batches after it, in order and contiguous; acks trim the spool. Failures
reconnect with exponential back-off and jitter (at least the server's RetryInfo
delay); SlowDown pauses sending. Errors that retrying cannot fix stop delivery and
leave the spool on disk for a later ``tracker sync``.

Reconnecting is prompt: the thread watches the channel's connectivity, and when the
channel becomes READY again (the restarted server accepted a connection) a back-off
in progress ends at once and the back-off starts over. Without that, the back-off grown
through an outage (plus gRPC's own reconnect back-off) roughly doubled it. A normal
close half-closes the stream and lets the server end it (status OK); only a stop at
the deadline cancels.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc

from tracker_client._clock import REAL_CLOCK, Backoff, Clock
from tracker_client._columns import encode_batch_request, encode_open_request
from tracker_client._spool import Spool
from tracker_client._stats import DeliveryStats
from tracker_proto.v1 import ingest_pb2

log = logging.getLogger("tracker_client")

STREAM_METHOD = "/tracker.v1.IngestService/Stream"

# Status codes after which reconnecting cannot help: the stream's identity is wrong.
FATAL_CODES = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNIMPLEMENTED,
})


IDLE_WAIT_S = 1.0
"""Longest idle wait of the stream threads. Every change they wait for (a new batch, an
ack, the stream's end, stop, close) notifies them; the timeout is only a safety net.
Short polls would cost the training loop: each wake-up takes the GIL from it."""


def retry_delay_s(exc: grpc.RpcError) -> float:
    """The RetryInfo delay in a status' rich details, 0 when absent."""
    if not isinstance(exc, grpc.Call):  # fakes raise bare RpcErrors: no hint
        return 0.0
    try:
        from google.rpc import error_details_pb2
        from grpc_status import rpc_status

        status = rpc_status.from_call(exc)
    except Exception:  # no details, or not a Call (fakes): no hint
        return 0.0
    if status is None:
        return 0.0
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return float(info.retry_delay.ToMilliseconds()) / 1000.0
    return 0.0


@dataclass
class _Session:
    """State of one stream attempt."""

    committed: int = 0
    opened: bool = False
    dead: bool = False
    pause_until: float = 0.0
    inflight: collections.deque[tuple[int, int]] = field(default_factory=collections.deque)
    inflight_bytes: int = 0


class ChannelWatch:
    """Sets ``event`` whenever ``channel`` goes into READY from another state."""

    def __init__(self, channel: grpc.Channel, event: threading.Event) -> None:
        self._channel: grpc.Channel | None = channel
        self._event = event
        self._state: grpc.ChannelConnectivity | None = None
        try:
            channel.subscribe(self._on_change, try_to_connect=False)
        except (AttributeError, NotImplementedError, TypeError):  # fakes: no connectivity
            self._channel = None

    def _on_change(self, state: grpc.ChannelConnectivity) -> None:
        before, self._state = self._state, state
        if state == grpc.ChannelConnectivity.READY and before is not None and (
                before != grpc.ChannelConnectivity.READY):
            self._event.set()

    def close(self) -> None:
        """Stop watching."""
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(Exception):  # the channel may be closed already
                channel.unsubscribe(self._on_change)


class StreamSender:
    """Delivers one spool. ``attach()`` it to a run to start; ``close()`` to stop."""

    def __init__(
        self,
        channel: grpc.Channel,
        spool: Spool,
        stats: DeliveryStats,
        *,
        metadata: tuple[tuple[str, str], ...] = (),
        backoff: Backoff | None = None,
        clock: Clock = REAL_CLOCK,
        max_inflight_bytes: int = 32 << 20,
        drain_only: bool = False,
    ) -> None:
        """``drain_only``: end once the spool is empty (orphan spools, ``tracker sync``)."""
        self._channel = channel
        self._call_stream = channel.stream_stream(
            STREAM_METHOD,
            request_serializer=_identity,  # requests are pre-serialized bytes
            response_deserializer=ingest_pb2.StreamResponse.FromString,
        )
        self._spool = spool
        self.stats = stats
        self._metadata = metadata
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._max_inflight = max_inflight_bytes
        self._drain_only = drain_only
        self._open: ingest_pb2.Open | None = None
        self._cv = threading.Condition()
        self._stop = threading.Event()
        # Ends a back-off early: set by stop() and when the channel becomes READY again.
        self._wake = threading.Event()
        self._watch: ChannelWatch | None = None
        self._error = ""  # last_error as this thread set it (cleared once streaming again)
        self._closing = False
        # (seq, monotonic time of its first send), in seq order; popped by acks.
        self._sent_at: collections.deque[tuple[int, float]] = collections.deque()
        self._call: grpc.RpcContext | None = None
        self.fatal: grpc.RpcError | None = None
        self.finished = threading.Event()
        """Set when the thread has ended (drained, stopped or failed)."""
        self._thread = threading.Thread(target=self._loop, name="tracker-stream", daemon=True)

    # -- control (any thread) ----------------------------------------------------------

    def attach(self, open_msg: ingest_pb2.Open) -> None:
        """Set the writer identity and start streaming."""
        self._open = open_msg
        self._thread.start()

    @property
    def stream_error(self) -> str:
        """The error that ended the last stream, until a stream opens again."""
        return self._error

    @property
    def attached(self) -> bool:
        """Whether a writer identity is set."""
        return self._open is not None

    def wake(self) -> None:
        """New batches are in the spool."""
        with self._cv:
            self._cv.notify_all()

    def wait_acked(self, seq: int, deadline: float) -> bool:
        """Wait until ``seq`` is acknowledged; False at the deadline or on a fatal error."""
        with self._cv:
            while self._spool.acked_seq < seq:
                if self.fatal is not None or self._stop.is_set():
                    return False
                remaining = deadline - self._clock.monotonic()
                if remaining <= 0:
                    return False
                self._cv.wait(min(remaining, 0.1))
            return True

    def close(self, deadline: float) -> bool:
        """Deliver what is spooled until ``deadline``, then stop. True when all is acked."""
        target = self._spool.last_seq
        with self._cv:
            self._closing = True  # lets the request stream half-close once all is sent
            self._cv.notify_all()
        done = self._open is not None and self.wait_acked(target, deadline)
        if done and self._thread.is_alive():
            # Everything is acked and the requests are half-closed: the server ends the
            # stream (OK) at once. Cancelling instead would log a CANCELLED call.
            self.finished.wait(max(0.0, min(2.0, deadline - self._clock.monotonic())))
        self.stop(max(0.05, deadline - self._clock.monotonic()))
        return done or self._spool.pending_batches == 0

    def stop(self, join_timeout_s: float = 2.0) -> None:
        """Stop now (cancels the stream); whatever is unacknowledged stays spooled."""
        self._stop.set()
        self._wake.set()
        with self._cv:
            self._cv.notify_all()
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()
        call = self._call
        if call is not None:
            call.cancel()
        if self._thread.is_alive():
            self._thread.join(join_timeout_s)

    # -- thread ------------------------------------------------------------------------

    def _loop(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a bug must not kill training; keep the spool
            log.exception("tracker_client: stream thread failed")
            self.stats.last_error = f"stream thread failed: {exc!r}"
            self.stats.state = "failed"
        finally:
            if self.stats.state != "failed":
                self.stats.state = "closed"  # not "connecting": nothing will connect now
            self.finished.set()
            with self._cv:
                self._cv.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cv:
                while self._spool.pending_batches == 0 and not self._stop.is_set():
                    if self._drain_only or self._closing:
                        return
                    self._cv.wait(IDLE_WAIT_S)
            if self._stop.is_set():
                return
            self._wake.clear()  # set by stop(), or by READY during the back-off below
            hint = self._one_stream()
            failed_at = self._clock.monotonic()
            if self._stop.is_set() or self.fatal is not None:
                return
            if self._spool.pending_batches == 0:
                continue
            self.stats.reconnects += 1
            delay = self._backoff.next_delay(hint)
            # Watched only while backing off: grpc polls a subscribed channel's state in
            # a thread that takes the GIL five times a second, and each time the
            # training loop (this process's, with the thread sender) waits for it.
            self._watch = ChannelWatch(self._channel, self._wake)
            try:
                woken = self._clock.sleep(delay, self._wake)
            finally:
                watch, self._watch = self._watch, None
                if watch is not None:
                    watch.close()
            if woken and not self._stop.is_set():
                # The channel is READY again: the server is back, try now and start the
                # back-off over (a hint from the server still holds).
                self._backoff.reset()
                rest = hint - (self._clock.monotonic() - failed_at)
                if rest > 0:
                    self._clock.sleep(rest, self._stop)

    def _one_stream(self) -> float:
        """Run one stream until it ends; return the server's retry hint (seconds)."""
        session = _Session()
        self.stats.state = "connecting"
        try:
            call = self._call_stream(self._requests(session), metadata=self._metadata or None)
            self._call = call
            for resp in call:
                self._on_response(session, resp)
            return 0.0
        except grpc.RpcError as exc:
            if self._stop.is_set():
                return 0.0
            code = exc.code()
            self.stats.last_error = self._error = f"{code.name}: {exc.details()}"
            if code in FATAL_CODES:
                log.error("tracker_client: delivery stopped (%s); the spool %s keeps the "
                          "data for `tracker sync`", self.stats.last_error, self._spool.path)
                self.fatal = exc
                self.stats.state = "failed"
                return 0.0
            return retry_delay_s(exc)
        finally:
            with self._cv:
                session.dead = True
                self._cv.notify_all()
            self._call = None
            if self.stats.state != "failed":
                self.stats.state = "connecting"

    def _on_response(self, session: _Session, resp: ingest_pb2.StreamResponse) -> None:
        kind = resp.WhichOneof("kind")
        if kind == "opened":
            with self._cv:
                session.committed = resp.opened.committed_seq
                session.opened = True
                self._cv.notify_all()
            self.stats.state = "streaming"
            self._backoff.reset()
            if self._error and self.stats.last_error == self._error:
                self.stats.last_error = ""  # recovered: the outage's error is history
            self._error = ""
            self._on_ack(resp.opened.committed_seq)
        elif kind == "ack":
            self._on_ack(resp.ack.committed_through_seq)
        elif kind == "rejected":
            rej = resp.rejected
            rec = self._spool.get(rej.seq)
            self.stats.batches_rejected += 1
            self.stats.points_rejected += rec.points if rec is not None else 0
            self.stats.last_error = f"batch {rej.seq} rejected: {rej.message}"
            if rec is None or not rec.placeholder:
                log.warning("tracker_client: %s", self.stats.last_error)
        elif kind == "slow_down":
            self.stats.slow_downs += 1
            delay = resp.slow_down.retry_after.ToMilliseconds() / 1000.0
            with self._cv:
                session.pause_until = self._clock.monotonic() + delay

    def _on_ack(self, committed: int) -> None:
        # Rejected batches are trimmed too; RunStats.points_acked excludes them.
        self._spool.trim(committed)
        now = self._clock.monotonic()
        with self._cv:
            sent = self._sent_at
            while sent and sent[0][0] <= committed:
                self.stats.ack_ms.append((now - sent.popleft()[1]) * 1000.0)
            self._cv.notify_all()

    def _requests(self, session: _Session) -> Iterator[bytes]:
        """The request stream of one session (consumed by a gRPC thread)."""
        assert self._open is not None
        yield encode_open_request(self._open)
        with self._cv:
            while not session.opened:
                if session.dead or self._stop.is_set():
                    return
                self._cv.wait(0.1)
            cursor = max(session.committed, self._spool.acked_seq) + 1
        while True:
            with self._cv:
                while True:
                    if session.dead or self._stop.is_set():
                        return
                    acked = self._spool.acked_seq
                    while session.inflight and session.inflight[0][0] <= acked:
                        session.inflight_bytes -= session.inflight.popleft()[1]
                    pause = session.pause_until - self._clock.monotonic()
                    if pause > 0:
                        self._cv.wait(min(pause, 0.05))
                        continue
                    if cursor <= self._spool.last_seq and (
                            session.inflight_bytes < self._max_inflight):
                        break
                    if cursor > self._spool.last_seq and (self._closing or self._drain_only):
                        return  # half-close: the server acks what it has, then ends
                    self._cv.wait(IDLE_WAIT_S)
            rec = self._spool.get(cursor)
            # None: acknowledged meanwhile (by an earlier stream). Contiguity still needs
            # the seq; the server drops an already-committed seq before looking at it.
            payload = rec.payload if rec is not None else b""
            session.inflight.append((cursor, len(payload)))
            session.inflight_bytes += len(payload)
            with self._cv:
                if not self._sent_at or self._sent_at[-1][0] < cursor:  # first send only
                    self._sent_at.append((cursor, self._clock.monotonic()))
            self.stats.batches_sent += 1
            yield encode_batch_request(cursor, payload)
            cursor += 1


def _identity(data: bytes) -> bytes:
    return data
