"""The pipeline runner and the interceptor's wrapping of each call kind, with a fake
servicer context (no server, no network)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2

from tracker_server.domain.errors import Code, TrackerError, not_found
from tracker_server.transport.call import Call, CallKind, current_call
from tracker_server.transport.call_steps import CallStep
from tracker_server.transport.interceptors import CallInterceptor, serving


class FakeContext:
    """What the interceptor uses of ``grpc.aio.ServicerContext``."""

    def __init__(self) -> None:
        self.status: tuple[grpc.StatusCode, str, tuple[tuple[str, Any], ...]] | None = None

    async def abort(self, code: grpc.StatusCode, details: str = "",
                    trailing_metadata: tuple[tuple[str, Any], ...] = ()) -> None:
        self.status = (code, details, tuple(trailing_metadata))
        raise grpc.aio.AbortError(details)

    def code(self) -> grpc.StatusCode | None:
        return self.status[0] if self.status else None

    def peer(self) -> str:
        return "ipv4:10.1.2.3:4567"


class Recorder(CallStep):
    """Logs its hooks into a shared list; refuses when told to."""

    def __init__(self, name: str, events: list[str], refuse: TrackerError | None = None):
        self.name, self.events, self.refuse = name, events, refuse

    async def begin(self, call: Call) -> None:
        self.events.append(f"begin {self.name}")
        if self.refuse is not None:
            raise self.refuse

    def end(self, call: Call) -> None:
        self.events.append(f"end {self.name} {call.code}")


def _details(context: FakeContext) -> status_pb2.Status:
    assert context.status is not None
    (blob,) = [v for k, v in context.status[2] if k == "grpc-status-details-bin"]
    return status_pb2.Status.FromString(blob)


def _serve(steps: list[CallStep], handler: Any, context: FakeContext) -> Call:
    call = Call("/tracker.v1.ExperimentService/GetRun", CallKind.UNARY)

    async def scenario() -> None:
        async with serving(steps, call, context):
            await handler(call)

    asyncio.run(scenario())
    return call


async def _ok(call: Call) -> None:
    assert current_call() is call  # bound for the servicer


def test_begins_in_order_ends_in_reverse_and_the_call_is_bound() -> None:
    events: list[str] = []
    steps: list[CallStep] = [Recorder("a", events), Recorder("b", events)]
    call = _serve(steps, _ok, FakeContext())
    assert events == ["begin a", "begin b", "end b OK", "end a OK"]
    assert call.duration_s > 0
    assert current_call() is not call


def test_a_refusal_stops_the_begins_but_every_step_ends_with_the_status() -> None:
    events: list[str] = []
    denied = TrackerError(Code.PERMISSION_DENIED, "viewer may not")
    steps: list[CallStep] = [Recorder("a", events), Recorder("b", events, refuse=denied),
                             Recorder("c", events)]
    handled: list[Call] = []

    async def handler(call: Call) -> None:
        handled.append(call)

    context = FakeContext()
    with pytest.raises(grpc.aio.AbortError):
        _serve(steps, handler, context)
    assert handled == []
    assert events == ["begin a", "begin b", "end c PERMISSION_DENIED",
                      "end b PERMISSION_DENIED", "end a PERMISSION_DENIED"]
    assert context.status is not None
    assert context.status[:2] == (grpc.StatusCode.PERMISSION_DENIED, "viewer may not")


def test_a_handlers_tracker_error_becomes_its_status_with_rich_details() -> None:
    async def handler(call: Call) -> None:
        raise TrackerError(Code.INVALID_ARGUMENT, "bad run_id",
                           field_violations=[("run_id", "not a UUID")], retry_after_s=1.5)

    context = FakeContext()
    with pytest.raises(grpc.aio.AbortError):
        _serve([], handler, context)
    assert context.status is not None
    assert context.status[:2] == (grpc.StatusCode.INVALID_ARGUMENT, "bad run_id")
    details = _details(context)
    bad, retry = error_details_pb2.BadRequest(), error_details_pb2.RetryInfo()
    assert details.details[0].Unpack(bad) and details.details[1].Unpack(retry)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("run_id", "not a UUID")]
    assert retry.retry_delay.ToMilliseconds() == 1500


@pytest.mark.parametrize(("exc", "code"), [(RuntimeError("bug"), "UNKNOWN"),
                                           (asyncio.CancelledError(), "CANCELLED")])
def test_other_exceptions_pass_through_and_are_recorded(exc: BaseException,
                                                        code: str) -> None:
    events: list[str] = []

    async def handler(call: Call) -> None:
        raise exc

    context = FakeContext()
    with pytest.raises(type(exc)):
        _serve([Recorder("a", events)], handler, context)
    assert events == ["begin a", f"end a {code}"]
    assert context.status is None


# -- the interceptor's wrapping --------------------------------------------------------
@dataclass(frozen=True)
class Details:
    """What the interceptor reads of ``grpc.HandlerCallDetails``."""

    method: str
    invocation_metadata: tuple[tuple[str, str | bytes], ...]


def _intercept(interceptor: CallInterceptor, method: str, handler: Any) -> Any:
    async def continuation(details: Any) -> Any:
        return handler

    details = Details(method, (("x-request-id", "r1"), ("blob-bin", b"\x00")))
    # A stand-in for grpc.HandlerCallDetails, which has no public constructor.
    return asyncio.run(interceptor.intercept_service(continuation, details))  # type: ignore[arg-type]


def test_open_and_unknown_methods_pass_through_untouched() -> None:
    interceptor = CallInterceptor([])
    check: Any = grpc.unary_unary_rpc_method_handler(health.aio.HealthServicer().Check)
    assert _intercept(interceptor, "/grpc.health.v1.Health/Check", check) is check
    assert _intercept(interceptor, "/tracker.v1.Nope/Nothing", None) is None


class Capture(CallStep):
    def __init__(self) -> None:
        self.calls: list[Call] = []

    def end(self, call: Call) -> None:
        self.calls.append(call)


def test_unary_calls_are_wrapped_with_their_size_peer_and_metadata() -> None:
    capture = Capture()

    async def get_run(request: Any, context: Any) -> str:
        return "reply"

    wrapped = _intercept(CallInterceptor([capture]), "/tracker.v1.ExperimentService/GetRun",
                         grpc.unary_unary_rpc_method_handler(get_run))
    request = health_pb2.HealthCheckRequest(service="some.Service")
    assert asyncio.run(wrapped.unary_unary(request, FakeContext())) == "reply"
    (call,) = capture.calls
    assert (call.kind, call.code, call.peer) == (CallKind.UNARY, "OK", "ipv4:10.1.2.3:4567")
    assert call.request_bytes == request.ByteSize()
    assert dict(call.metadata) == {"x-request-id": "r1"}  # binary entries left out


def test_server_streams_map_errors_raised_after_responses() -> None:
    capture = Capture()

    async def stream_series(request: Any, context: Any) -> AsyncIterator[str]:
        yield "piece"
        raise not_found("run gone")

    wrapped = _intercept(CallInterceptor([capture]),
                         "/tracker.v1.MetricsQueryService/StreamMetricSeries",
                         grpc.unary_stream_rpc_method_handler(stream_series))
    context = FakeContext()
    got: list[str] = []

    async def consume() -> None:
        async for item in wrapped.unary_stream(health_pb2.HealthCheckRequest(), context):
            got.append(item)

    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(consume())
    assert got == ["piece"]
    assert context.status is not None and context.status[0] == grpc.StatusCode.NOT_FOUND
    assert capture.calls[0].kind is CallKind.SERVER_STREAM
    assert capture.calls[0].code == "NOT_FOUND"


def test_bidi_streams_see_their_call_and_map_errors() -> None:
    capture = Capture()

    async def stream(requests: AsyncIterator[int], context: Any) -> AsyncIterator[int]:
        call = current_call()
        async for n in requests:
            call.add_batch(n)
            yield n
        raise TrackerError(Code.UNAVAILABLE, "flush failed", retry_after_s=0.2)

    wrapped = _intercept(CallInterceptor([capture]), "/tracker.v1.IngestService/Stream",
                         grpc.stream_stream_rpc_method_handler(stream))
    context = FakeContext()
    got: list[int] = []

    async def requests() -> AsyncIterator[int]:
        for n in (3, 4):
            yield n

    async def consume() -> None:
        async for item in wrapped.stream_stream(requests(), context):
            got.append(item)

    with pytest.raises(grpc.aio.AbortError):
        asyncio.run(consume())
    assert got == [3, 4]
    assert context.status is not None and context.status[0] == grpc.StatusCode.UNAVAILABLE
    (call,) = capture.calls
    assert (call.kind, call.code, call.batches, call.points) == (
        CallKind.BIDI_STREAM, "UNAVAILABLE", 2, 7)
    assert call.request_bytes is None
