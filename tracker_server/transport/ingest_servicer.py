"""IngestService: the bidirectional stream and the unary fallback.

Each stream runs a reader task (validate, hand batches to the engine, stop reading
while the server is over its memory budget or the caller over its points/s, so HTTP/2
flow control pushes back) and writes responses from a queue fed by the reader and by
the engine's acks. Batches and points are reported to the call's record
(``transport/call.py``), whose throttle says how long to pause; errors are raised for
the interceptor to map.

Limits that keep one client from holding the server (all settings, see
docs/operations.md): at most ``max_streams`` streams at once (RESOURCE_EXHAUSTED with a
retry delay beyond); the Open must come within ``stream_open_timeout_s``
(DEADLINE_EXCEEDED); a client that does not read its responses gets at most one
pending ack and one pending SlowDown (both cumulative) and, once
``MAX_QUEUED_RESPONSES`` other responses wait, is no longer read from.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import structlog
from google.protobuf import duration_pb2

from tracker_proto.v1 import ingest_pb2, ingest_pb2_grpc, metrics_pb2
from tracker_server.domain.errors import Code, TrackerError, invalid
from tracker_server.domain.ingest import IngestEngine
from tracker_server.domain.ingest_service import IngestService
from tracker_server.domain.key_limit import KeyLimit
from tracker_server.domain.points import (
    Limits,
    WriterInfo,
    empty_batch,
    point_errors_of,
    validate_columns,
    validate_writer,
)
from tracker_server.transport.call import Call, current_call
from tracker_server.transport.convert import columns_from_proto
from tracker_server.transport.errors import rpc_code

log = structlog.get_logger(__name__)

_END = object()
_ACK = object()
"""Queue marker: send an Ack of ``last_acked`` (as it is when the marker is sent)."""
_SLOW_DOWN = object()
"""Queue marker: send a SlowDown of the largest delay asked for since the last one."""

MAX_QUEUED_RESPONSES = 256
"""Responses (besides the coalesced ack and SlowDown) a stream may have waiting for a
client that does not read them; beyond, the stream stops reading requests."""


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromMilliseconds(max(1, int(seconds * 1000)))  # a SlowDown of 0 ms would mean nothing
    return d


def _rejection(seq: int, error: TrackerError) -> ingest_pb2.StreamResponse:
    return ingest_pb2.StreamResponse(
        rejected=ingest_pb2.BatchRejected(
            seq=seq,
            code=rpc_code(error.code),
            message=error.message,
            errors=[
                metrics_pb2.PointError(point_index=i, reason=r)
                for i, r in point_errors_of(error)
            ],
        )
    )


class _StreamSession:
    """State of one Stream call; also the engine's Subscriber for its writer."""

    def __init__(self, engine: IngestEngine, limits: Limits, slow_down_s: float,
                 call: Call, key_limit: KeyLimit | None = None,
                 open_timeout_s: float | None = None,
                 sent_slow_down: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self._sent_slow_down = sent_slow_down
        self.limits = limits
        self.slow_down_s = slow_down_s
        self.call = call
        self.key_limit = key_limit
        self.open_timeout_s = open_timeout_s
        self.out: asyncio.Queue[Any] = asyncio.Queue()
        self.info: WriterInfo | None = None
        self.last_seq = 0
        self.last_acked = -1
        self._acked = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None
        self.reading = True
        """Still reading requests (the client has not half-closed)."""
        self._ack_queued = False
        self._slow_down_queued = False
        self._slow_down_s = 0.0
        self._room = asyncio.Event()
        self._room.set()

    def put(self, item: Any) -> None:
        """Queue a response; the reader stops once too many wait (see ``wait_room``)."""
        self.out.put_nowait(item)
        if self.out.qsize() >= MAX_QUEUED_RESPONSES:
            self._room.clear()

    async def wait_room(self) -> None:
        """Return once the client has read enough responses to queue more."""
        await self._room.wait()

    def response(self, item: Any) -> Any:
        """The message for a dequeued item (markers become their current message)."""
        if self.out.qsize() < MAX_QUEUED_RESPONSES // 2:
            self._room.set()
        if item is _ACK:
            self._ack_queued = False
            return ingest_pb2.StreamResponse(
                ack=ingest_pb2.Ack(committed_through_seq=self.last_acked))
        if item is _SLOW_DOWN:
            self._slow_down_queued = False
            delay, self._slow_down_s = self._slow_down_s, 0.0
            if self._sent_slow_down is not None:
                self._sent_slow_down()
            return ingest_pb2.StreamResponse(
                slow_down=ingest_pb2.SlowDown(retry_after=_duration(delay)))
        return item

    # Subscriber -----------------------------------------------------------------------
    def on_ack(self, committed_seq: int, replay: bool = False) -> None:
        """Ack progress; ``replay``: ack even without progress, because the client sent
        a batch that is committed already (after Opened, so ``last_acked`` says nothing
        about what this stream has been told). Acks are cumulative: one waiting in the
        queue carries whatever is committed when it is sent."""
        if committed_seq > self.last_acked or replay:
            self.last_acked = max(self.last_acked, committed_seq)
            if self.last_acked >= self.last_seq:
                self._acked.set()
            if not self._ack_queued:
                self._ack_queued = True
                self.out.put_nowait(_ACK)

    def on_abort(self, error: TrackerError) -> None:
        self.out.put_nowait(error)

    def on_drain(self) -> None:
        # Not reading is how the stream stops; the engine ends it once its batches are in.
        if self.reader is not None and self.reading:
            self.reader.cancel()

    def on_slow_down(self, retry_after_s: float) -> None:
        self._slow_down_s = max(self._slow_down_s, retry_after_s)
        if not self._slow_down_queued:
            self._slow_down_queued = True
            self.out.put_nowait(_SLOW_DOWN)

    # Reader ---------------------------------------------------------------------------
    async def read(self, requests: AsyncIterator[ingest_pb2.StreamRequest]) -> None:
        try:
            await self._read(requests)
        except TrackerError as exc:
            self.out.put_nowait(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must end this stream, not the server
            log.exception("ingest.stream_reader_failed")
            self.out.put_nowait(TrackerError(Code.UNAVAILABLE, f"internal error: {exc!r}"))

    async def _first(self, requests: AsyncIterator[ingest_pb2.StreamRequest]
                     ) -> ingest_pb2.StreamRequest | None:
        if self.open_timeout_s is None:
            return await anext(requests, None)
        try:
            return await asyncio.wait_for(anext(requests, None), self.open_timeout_s)
        except TimeoutError:
            raise TrackerError(
                Code.DEADLINE_EXCEEDED,
                f"no Open within {self.open_timeout_s:g} s of the stream's start",
            ) from None

    async def _read(self, requests: AsyncIterator[ingest_pb2.StreamRequest]) -> None:
        first = await self._first(requests)
        if first is None:
            self.out.put_nowait(_END)
            return
        if first.WhichOneof("kind") != "open":
            raise invalid("the first message of a stream must be Open")
        o = first.open
        info = validate_writer(o.run_id, o.writer_id, o.rank, o.attempt)
        committed = await self.engine.open(info, self)
        self.info = info
        self.last_acked = committed
        self.put(ingest_pb2.StreamResponse(opened=ingest_pb2.Opened(committed_seq=committed)))
        async for request in requests:
            if request.WhichOneof("kind") != "batch":
                raise invalid("Open may be sent only once, as the first message")
            pause_s = self.call.add_batch(len(request.batch.columns.steps))
            await self._on_batch(info, committed, request.batch)
            if pause_s > 0:
                # The batch went through; the next read waits until the caller's debt is paid.
                self.on_slow_down(pause_s)
                await asyncio.sleep(pause_s)
            if self.engine.over_budget():
                self.on_slow_down(self.slow_down_s)
                # Not reading is the back-pressure: gRPC stops granting HTTP/2 window.
                await self.engine.wait_for_budget()
            await self.wait_room()
        # Client half-closed: wait for the ack of everything it sent, then end the call.
        self.reading = False
        self.on_ack(self.engine.committed_seq(info.key))
        while self.last_acked < self.last_seq:
            self._acked.clear()
            await self._acked.wait()
        self.out.put_nowait(_END)

    async def _on_batch(self, info: WriterInfo, opened_at: int, msg: ingest_pb2.Batch) -> None:
        seq = msg.seq
        if seq == 0:
            raise invalid("batch seq must be >= 1")
        if self.last_seq and seq <= self.last_seq:
            raise invalid(f"batch seq going backwards: {seq} after {self.last_seq}")
        if self.last_seq and seq != self.last_seq + 1:
            raise invalid(f"batch seq gap: {seq} after {self.last_seq} (seqs are contiguous)")
        committed = self.engine.committed_seq(info.key)
        if not self.last_seq and seq > max(opened_at, committed) + 1:
            raise invalid(
                f"first batch seq {seq} leaves a gap after committed seq "
                f"{max(opened_at, committed)}"
            )
        self.last_seq = seq
        if seq <= committed:
            self.on_ack(committed, replay=True)  # a committed batch again: ack, drop
            return
        try:
            batch = validate_columns(seq, columns_from_proto(msg.columns), self.limits)
            if self.key_limit is not None and batch.n:
                await self.key_limit.check(info.key.run_id, batch.keys, seq)
        except TrackerError as exc:
            if exc.code not in (Code.INVALID_ARGUMENT, Code.RESOURCE_EXHAUSTED):
                raise  # the database, not the batch: end the stream, the client resends
            self.engine.submit(info, empty_batch(seq))
            self.put(_rejection(seq, exc))
            return
        await self.engine.resolve_keys(batch)
        self.engine.submit(info, batch)


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    """Thin servicer over the ingest engine."""

    def __init__(self, engine: IngestEngine, limits: Limits, slow_down_s: float, *,
                 key_limit: KeyLimit | None = None, max_streams: int | None = None,
                 open_timeout_s: float | None = None) -> None:
        self._engine = engine
        self._limits = limits
        self._slow_down_s = slow_down_s
        self._key_limit = key_limit
        self._max_streams = max_streams
        self._open_timeout_s = open_timeout_s
        self.active_streams = 0
        """Stream calls being served now."""
        self.slow_downs_sent = 0
        """SlowDown messages sent so far, on every stream (telemetry reads it)."""
        self._ingest = IngestService(engine, limits, key_limit)

    async def Stream(
        self,
        request_iterator: AsyncIterator[ingest_pb2.StreamRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[ingest_pb2.StreamResponse]:
        call = current_call()
        call.track_ingest()
        if self._max_streams is not None and self.active_streams >= self._max_streams:
            raise TrackerError(
                Code.RESOURCE_EXHAUSTED,
                f"this server has {self.active_streams} streams open, its limit "
                "(TRACKER_MAX_STREAMS); retry later or on another replica",
                retry_after_s=1.0,
            )
        self.active_streams += 1
        session = _StreamSession(self._engine, self._limits, self._slow_down_s, call,
                                 self._key_limit, self._open_timeout_s,
                                 self._count_slow_down)
        reader = session.reader = asyncio.create_task(session.read(request_iterator))
        try:
            while True:
                item = await session.out.get()
                if item is _END:
                    return
                if isinstance(item, TrackerError):
                    raise item
                yield session.response(item)
        finally:
            self.active_streams -= 1
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            if session.info is not None:
                self._engine.close(session.info.key, session)

    def _count_slow_down(self) -> None:
        self.slow_downs_sent += 1

    async def LogMetrics(
        self,
        request: ingest_pb2.LogMetricsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> ingest_pb2.LogMetricsResponse:
        current_call().add_batch(len(request.batch.columns.steps))
        w = request.writer
        result = await self._ingest.log_metrics(
            w.run_id, w.writer_id, w.rank, w.attempt, request.batch.seq,
            columns_from_proto(request.batch.columns),
        )
        return ingest_pb2.LogMetricsResponse(
            committed_through_seq=result.committed_through_seq,
            points_written=result.points_written,
        )
