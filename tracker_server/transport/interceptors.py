"""The call interceptor: authenticate, rate-limit, trace and log every RPC.

One interceptor (one wrapper per call, not four) doing, in order:

1. a request id (``x-request-id`` from the caller, else a fresh one) and, with
   telemetry on, a server span continuing the caller's ``traceparent``; both are bound
   into structlog's contextvars so every log line of the call carries them;
2. authentication and the role check (``transport/auth.py``);
3. rate limits per caller (``transport/ratelimit.py``): unary calls beyond the limit
   end with RESOURCE_EXHAUSTED + RetryInfo; an ingest stream over its points/s gets a
   ``SlowDown`` and is not read until its debt is paid (nothing is dropped);
4. one canonical ``rpc`` log line when the call ends (method, code, duration, peer,
   key, sizes; for streams batches and points).

Health checks pass through untouched: probes need no key and would only add noise.
Errors go through ``transport/errors.py`` like the servicers' own.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from google.protobuf import duration_pb2

from tracker_proto.v1 import ingest_pb2
from tracker_server.domain.access import OPEN_SERVICES, split_method
from tracker_server.domain.errors import Code, TrackerError
from tracker_server.telemetry import Telemetry, trace_id_of
from tracker_server.transport.auth import Authenticator, Principal
from tracker_server.transport.errors import abort
from tracker_server.transport.ratelimit import RateLimiter, peer_host

log = structlog.get_logger("tracker_server.rpc")

_INGEST_STREAM = "/tracker.v1.IngestService/Stream"
_LOG_METRICS = "/tracker.v1.IngestService/LogMetrics"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_DONE = object()


class _Call:
    """Bookkeeping of one RPC, for its log line, span and metrics."""

    __slots__ = ("batches", "key_id", "method", "peer", "points", "request_bytes",
                 "request_id", "role", "span", "started", "throttled_s")

    def __init__(self, method: str, peer: str, request_id: str, span: Any) -> None:
        self.method = method
        self.peer = peer
        self.request_id = request_id
        self.span = span
        self.started = time.perf_counter()
        self.key_id: str | None = None
        self.role: str | None = None
        self.request_bytes: int | None = None
        self.batches: int | None = None
        self.points: int | None = None
        self.throttled_s = 0.0


def _code_name(context: Any, exc: BaseException | None) -> str:
    code = context.code()
    if code is not None:
        if isinstance(code, grpc.StatusCode):
            return str(code.name)
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), str(code))
    if exc is None:
        return "OK"
    if isinstance(exc, asyncio.CancelledError):
        return "CANCELLED"
    return "UNKNOWN"


def _slow_down(seconds: float) -> ingest_pb2.StreamResponse:
    delay = duration_pb2.Duration()
    delay.FromMilliseconds(max(1, int(seconds * 1000)))
    return ingest_pb2.StreamResponse(slow_down=ingest_pb2.SlowDown(retry_after=delay))


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Auth, rate limits, tracing and the canonical log line for every tracker RPC."""

    def __init__(self, auth: Authenticator, unary_limit: RateLimiter,
                 points_limit: RateLimiter, telemetry: Telemetry) -> None:
        self._auth = auth
        self._unary_limit = unary_limit
        self._points_limit = points_limit
        self._telemetry = telemetry

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or split_method(method)[0] in OPEN_SERVICES:
            return handler
        metadata = {k: v for k, v in (details.invocation_metadata or ())
                    if isinstance(v, str)}
        kwargs = {"request_deserializer": handler.request_deserializer,
                  "response_serializer": handler.response_serializer}
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, metadata, handler.unary_unary), **kwargs)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_unary_stream(method, metadata, handler.unary_stream), **kwargs)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._wrap_stream_stream(method, metadata, handler.stream_stream), **kwargs)
        return handler  # client streaming: no tracker RPC uses it

    # -- shared steps -------------------------------------------------------------------
    def _begin(self, method: str, metadata: dict[str, str], context: Any) -> _Call:
        request_id = metadata.get("x-request-id", "")
        if not _REQUEST_ID_RE.match(request_id):
            request_id = uuid.uuid4().hex[:16]
        span = self._telemetry.start_rpc_span(method, metadata)
        call = _Call(method, context.peer() or "", request_id, span)
        structlog.contextvars.bind_contextvars(
            request_id=request_id, trace_id=trace_id_of(span))
        return call

    async def _admit(self, call: _Call, metadata: dict[str, str], unary_points: int) -> Principal:
        principal = await self._auth.authenticate(call.method, metadata.get("authorization"))
        if principal.key_id is not None:
            call.key_id = principal.key_id
            call.role = principal.role.label if principal.role else None
            structlog.contextvars.bind_contextvars(key_id=principal.key_id)
        if call.method == _INGEST_STREAM:
            return principal  # streams are limited by points, batch by batch
        caller = principal.key_id or peer_host(call.peer)
        if self._unary_limit.enabled:
            wait = self._unary_limit.bucket(caller).try_take(1)
            if wait > 0:
                raise TrackerError(Code.RESOURCE_EXHAUSTED,
                                   "request rate limit exceeded for this API key or peer",
                                   retry_after_s=wait)
        if unary_points and self._points_limit.enabled:
            wait = self._points_limit.bucket(caller).try_take(unary_points)
            if wait > 0:
                raise TrackerError(Code.RESOURCE_EXHAUSTED,
                                   "ingest rate limit (points/s) exceeded",
                                   retry_after_s=wait)
        return principal

    def _end(self, call: _Call, context: Any, exc: BaseException | None) -> None:
        duration_s = time.perf_counter() - call.started
        code = _code_name(context, exc)
        fields = {"key_id": call.key_id, "role": call.role,
                  "request_bytes": call.request_bytes, "batches": call.batches,
                  "points": call.points,
                  "throttled_ms": round(call.throttled_s * 1000, 1) if call.throttled_s
                  else None}
        self._telemetry.end_rpc(call.span, call.method, code, duration_s, fields)
        # Ids are passed explicitly too: processors without merge_contextvars still see them.
        log.info("rpc", method=call.method, code=code, duration_ms=round(duration_s * 1000, 2),
                 peer=call.peer, request_id=call.request_id,
                 **{k: v for k, v in fields.items() if v is not None},
                 **({"trace_id": trace_id_of(call.span)} if call.span is not None else {}))
        structlog.contextvars.unbind_contextvars("request_id", "trace_id", "key_id")

    @contextlib.asynccontextmanager
    async def _scope(self, method: str, metadata: dict[str, str], context: Any
                     ) -> AsyncIterator[_Call]:
        """One call's bookkeeping: begin, map TrackerError to a status, log the end."""
        call = self._begin(method, metadata, context)
        exc: BaseException | None = None
        try:
            yield call
        except TrackerError as err:
            await abort(context, err)
        except BaseException as err:
            exc = err
            raise
        finally:
            self._end(call, context, exc)

    # -- per call kind ------------------------------------------------------------------
    def _wrap_unary(self, method: str, metadata: dict[str, str], inner: Any) -> Any:
        async def behavior(request: Any, context: Any) -> Any:
            async with self._scope(method, metadata, context) as call:
                call.request_bytes = request.ByteSize()
                points = len(request.batch.columns.steps) if method == _LOG_METRICS else 0
                if points:
                    call.batches, call.points = 1, points
                await self._admit(call, metadata, points)
                return await inner(request, context)

        return behavior

    def _wrap_unary_stream(self, method: str, metadata: dict[str, str], inner: Any) -> Any:
        async def behavior(request: Any, context: Any) -> AsyncIterator[Any]:
            async with self._scope(method, metadata, context) as call:
                call.request_bytes = request.ByteSize()
                await self._admit(call, metadata, 0)
                async for response in _responses(inner(request, context)):
                    yield response

        return behavior

    def _wrap_stream_stream(self, method: str, metadata: dict[str, str], inner: Any) -> Any:
        async def behavior(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
            async with self._scope(method, metadata, context) as call:
                principal = await self._admit(call, metadata, 0)
                if method == _INGEST_STREAM:
                    call.batches = call.points = 0
                if method == _INGEST_STREAM and self._points_limit.enabled:
                    caller = principal.key_id or peer_host(call.peer)
                    responses = self._throttled(call, caller, requests, inner, context)
                else:
                    responses = _responses(inner(self._counted(call, requests), context))
                async for response in responses:
                    yield response

        return behavior

    async def _counted(self, call: _Call, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            if call.batches is not None and request.WhichOneof("kind") == "batch":
                call.batches += 1
                call.points = (call.points or 0) + len(request.batch.columns.steps)
            yield request

    async def _throttled(self, call: _Call, caller: str, requests: AsyncIterator[Any],
                         inner: Any, context: Any) -> AsyncIterator[Any]:
        """The servicer's responses, plus SlowDown whenever the caller is over its rate."""
        out: asyncio.Queue[Any] = asyncio.Queue()
        bucket = self._points_limit.bucket(caller)

        async def limited() -> AsyncIterator[Any]:
            async for request in requests:
                yield request
                if request.WhichOneof("kind") != "batch":
                    continue
                n = len(request.batch.columns.steps)
                call.batches = (call.batches or 0) + 1
                call.points = (call.points or 0) + n
                wait = bucket.take(n)
                if wait > 0:
                    # The batch went through; the next read waits until the debt is paid.
                    out.put_nowait(_slow_down(wait))
                    call.throttled_s += wait
                    await asyncio.sleep(wait)

        async def pump() -> None:
            try:
                async for response in _responses(inner(limited(), context)):
                    out.put_nowait(response)
                out.put_nowait(_DONE)
            except BaseException as err:
                out.put_nowait(err)
                if isinstance(err, asyncio.CancelledError):
                    raise

        task = asyncio.create_task(pump())
        try:
            while True:
                item = await out.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            task.cancel()
            # Its outcome, if any, was already delivered through ``out``.
            with contextlib.suppress(BaseException):
                await task


async def _responses(result: Any) -> AsyncIterator[Any]:
    """Responses of a streaming handler, whether an async generator or a coroutine."""
    if inspect.isasyncgen(result):
        async for response in result:
            yield response
    else:
        await result
