"""Background delivery: batching thread + stream thread with reconnect and resume.

Records appended by ``log()`` are drained by the batcher thread into numbered batches
(>= ``batch_points`` points or every ``flush_interval_s``). The stream thread keeps one
``IngestService.Stream`` open, resends every batch after the server's committed seq on
(re)connect, and trims batches as acks arrive. Nothing here runs on the training thread.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from tracker_client._columns import Batch, ColumnBuilder
from tracker_client.pb import ingest_pb2, ingest_pb2_grpc

# Status codes after which reconnecting cannot help: the stream's input is wrong.
_FATAL = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
          grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED,
          grpc.StatusCode.UNAUTHENTICATED}


@dataclass(frozen=True)
class SenderOptions:
    """Delivery tuning."""

    batch_points: int = 1000
    """A batch is cut as soon as it holds this many points."""
    max_batch_points: int = 100_000
    """Upper bound of one batch (keeps messages far below the server's size limit)."""
    flush_interval_s: float = 0.1
    """A non-empty partial batch is cut after this long."""
    max_inflight_bytes: int = 32 << 20
    """Sent-but-unacknowledged bytes before the stream pauses sending."""
    max_buffer_bytes: int = 256 << 20
    """Unacknowledged bytes kept in memory; beyond it new points are dropped (counted)."""
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 10.0


@dataclass
class DeliveryStats:
    """Counters, readable at any time (approximate while threads run)."""

    points_logged: int = 0
    points_acked: int = 0
    points_dropped: int = 0
    batches_sent: int = 0
    batches_rejected: int = 0
    reconnects: int = 0
    slow_downs: int = 0
    last_error: str = ""


class Sender:
    """Owns the batcher and stream threads of one writer."""

    def __init__(
        self,
        channel: grpc.Channel,
        open_msg: ingest_pb2.Open,
        options: SenderOptions,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._stub = ingest_pb2_grpc.IngestServiceStub(channel)
        self._open = open_msg
        self._opt = options
        self._metadata = metadata
        self.records: collections.deque[tuple[Any, ...]] = collections.deque()
        self.stats = DeliveryStats()
        self._cv = threading.Condition()
        self._unacked: collections.OrderedDict[int, Batch] = collections.OrderedDict()
        self._unacked_bytes = 0
        self._next_seq = 1
        self._acked_seq = 0
        self._flush_requested = False
        self._closing = False
        self._stopped = False
        self._fatal: grpc.RpcError | None = None
        self._call: Any = None
        self._batcher = threading.Thread(target=self._batch_loop, name="tracker-batcher",
                                         daemon=True)
        self._streamer = threading.Thread(target=self._stream_loop, name="tracker-stream",
                                          daemon=True)

    def start(self) -> None:
        """Start both threads."""
        self._batcher.start()
        self._streamer.start()

    # -- training-thread side ----------------------------------------------------------

    def wake(self) -> None:
        """Tell the batcher that records are waiting (cheap, lock-free if idle)."""
        if len(self.records) == 1:
            with self._cv:
                self._cv.notify_all()

    @property
    def acked_seq(self) -> int:
        """Highest seq the server has committed."""
        return self._acked_seq

    @property
    def last_seq(self) -> int:
        """Highest seq cut so far."""
        return self._next_seq - 1

    def pending(self) -> tuple[int, int, float | None]:
        """(unacked batches, unacked points incl. unbatched records, oldest age s)."""
        with self._cv:
            batches = list(self._unacked.values())
        unbatched = sum(len(r[0]) if isinstance(r[0], dict) else len(r[1]) for r in
                        list(self.records))
        oldest = time.monotonic() - batches[0].created if batches else None
        return len(batches), sum(b.points for b in batches) + unbatched, oldest

    def flush(self, timeout_s: float) -> bool:
        """Cut a batch of everything logged so far and wait for its ack."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            self._flush_requested = True
            self._cv.notify_all()
            while self._flush_requested or self.records:
                if not self._cv.wait(max(0.0, deadline - time.monotonic())):
                    break
            target = self._next_seq - 1
            while self._acked_seq < target and self._fatal is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cv.wait(remaining)
            return self._acked_seq >= target

    def close(self, timeout_s: float) -> bool:
        """Flush within ``timeout_s``, then stop both threads. True when all is durable."""
        done = self.flush(timeout_s)
        with self._cv:
            self._closing = True
            self._stopped = True
            self._cv.notify_all()
        call = self._call
        if call is not None:
            call.cancel()
        self._batcher.join(1.0)
        self._streamer.join(1.0)
        return done

    # -- batcher thread ----------------------------------------------------------------

    def _batch_loop(self) -> None:
        opt = self._opt
        builder = ColumnBuilder()
        while True:
            with self._cv:
                if self._stopped:
                    return
                if not self.records and not self._flush_requested:
                    timeout = opt.flush_interval_s
                    if builder.first_at is not None:
                        timeout = max(0.0, builder.first_at + opt.flush_interval_s
                                      - time.monotonic())
                    self._cv.wait(timeout)
            flush = self._flush_requested
            while self.records and builder.points < opt.max_batch_points:
                rec = self.records.popleft()
                if isinstance(rec[0], dict):
                    builder.add_dict(rec[0], rec[1], rec[2])
                else:
                    builder.add_series(*rec)
                if builder.points >= opt.batch_points:
                    self._cut(builder)
            due = (builder.first_at is not None
                   and time.monotonic() - builder.first_at >= opt.flush_interval_s)
            if builder.points and (due or flush):
                self._cut(builder)
            if flush and not self.records:
                with self._cv:
                    self._flush_requested = False
                    self._cv.notify_all()

    def _cut(self, builder: ColumnBuilder) -> None:
        points = builder.points
        cols = builder.build()
        with self._cv:
            size = cols.ByteSize()
            if self._unacked_bytes + size > self._opt.max_buffer_bytes:
                self.stats.points_dropped += points
                return
            batch = Batch(self._next_seq, cols, points, size)
            self._next_seq += 1
            self._unacked[batch.seq] = batch
            self._unacked_bytes += size
            self._cv.notify_all()

    # -- stream thread -----------------------------------------------------------------

    def _requests(self, opened: threading.Event, state: dict[str, Any]) -> Iterator[
        ingest_pb2.StreamRequest
    ]:
        yield ingest_pb2.StreamRequest(open=self._open)
        opened.wait()
        cursor = state["committed"] + 1
        while True:
            with self._cv:
                while True:
                    if self._stopped or state["dead"]:
                        return
                    pause = state["pause_until"] - time.monotonic()
                    inflight = sum(b.size for s, b in self._unacked.items() if s < cursor)
                    if (cursor in self._unacked and pause <= 0
                            and inflight < self._opt.max_inflight_bytes):
                        batch = self._unacked[cursor]
                        break
                    if cursor <= self._acked_seq:
                        cursor = self._acked_seq + 1
                        continue
                    self._cv.wait(max(0.005, min(pause, 0.1)) if pause > 0 else 0.1)
            cursor += 1
            self.stats.batches_sent += 1
            yield batch.request()

    def _stream_loop(self) -> None:
        backoff = self._opt.backoff_initial_s
        while not self._stopped:
            opened = threading.Event()
            state: dict[str, Any] = {"committed": 0, "dead": False, "pause_until": 0.0}
            try:
                call = self._stub.Stream(self._requests(opened, state), metadata=self._metadata)
                self._call = call
                for resp in call:
                    kind = resp.WhichOneof("kind")
                    if kind == "opened":
                        state["committed"] = resp.opened.committed_seq
                        self._on_ack(resp.opened.committed_seq)
                        opened.set()
                        backoff = self._opt.backoff_initial_s
                    elif kind == "ack":
                        self._on_ack(resp.ack.committed_through_seq)
                    elif kind == "rejected":
                        self.stats.batches_rejected += 1
                        self.stats.last_error = resp.rejected.message
                    elif kind == "slow_down":
                        self.stats.slow_downs += 1
                        delay = resp.slow_down.retry_after.ToMilliseconds() / 1000
                        with self._cv:
                            state["pause_until"] = time.monotonic() + delay
                if self._stopped:
                    return
            except grpc.RpcError as exc:
                if self._stopped:
                    return
                self.stats.last_error = f"{exc.code().name}: {exc.details()}"
                if exc.code() in _FATAL:
                    with self._cv:
                        self._fatal = exc
                        self._cv.notify_all()
                    return
            finally:
                with self._cv:
                    state["dead"] = True
                    self._cv.notify_all()
                opened.set()
            self.stats.reconnects += 1
            time.sleep(backoff * (0.5 + random.random()))  # jitter
            backoff = min(self._opt.backoff_max_s, backoff * 2)

    def _on_ack(self, committed: int) -> None:
        with self._cv:
            if committed <= self._acked_seq:
                return
            self._acked_seq = committed
            while self._unacked:
                seq, batch = next(iter(self._unacked.items()))
                if seq > committed:
                    break
                del self._unacked[seq]
                self._unacked_bytes -= batch.size
                self.stats.points_acked += batch.points
            self._cv.notify_all()

    @property
    def fatal_error(self) -> grpc.RpcError | None:
        """The non-retryable error that stopped delivery, if any."""
        return self._fatal
