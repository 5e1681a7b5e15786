"""The call interceptor: every tracker RPC runs through one pipeline of steps.

The steps (``transport/call_steps.py``), in order: request id and span, authentication
and the role check, rate limits, the canonical log line. The interceptor itself only
wraps each call kind, binds the call's :class:`~tracker_server.transport.call.Call`
for the servicer, and is the one place where a TrackerError, raised by a step or by a
servicer, becomes a gRPC status (``transport/errors.py``).

Every method, open ones included, decodes its requests through
``decoding.safe_deserializer``: bytes that are not a valid message end the call with
INVALID_ARGUMENT instead of gRPC's UNKNOWN. Open methods (the health service) skip the
steps otherwise: probes need no key and would only add noise.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc

from tracker_server.domain.access import required_role
from tracker_server.domain.errors import TrackerError
from tracker_server.transport.call import Call, CallKind, bind_call
from tracker_server.transport.call_steps import CallStep
from tracker_server.transport.decoding import (
    Undecodable,
    check_decoded,
    decoded_stream,
    invalid_request,
    safe_deserializer,
)
from tracker_server.transport.errors import abort


def code_name(context: Any, exc: BaseException | None) -> str:
    """The status code name a call ended with."""
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


@contextlib.asynccontextmanager
async def serving(steps: Sequence[CallStep], call: Call, context: Any) -> AsyncIterator[Call]:
    """Run ``steps`` around one call, with the call bound for the servicer; a
    TrackerError from a step or the handler ends the call with its status."""
    exc: BaseException | None = None
    bind_call(call)
    try:
        for step in steps:
            await step.begin(call)
        yield call
    except TrackerError as err:
        await abort(context, err)
    except BaseException as err:
        exc = err
        raise
    finally:
        call.finish(code_name(context, exc))
        for step in reversed(steps):
            step.end(call)
        bind_call(None)


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Runs every tracker RPC through ``steps`` (see ``call_steps.standard_steps``)."""

    def __init__(self, steps: Sequence[CallStep]) -> None:
        self.steps = tuple(steps)

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method
        kwargs = {"request_deserializer": safe_deserializer(handler.request_deserializer),
                  "response_serializer": handler.response_serializer}
        if required_role(method) is None:
            # Without a deserializer the method takes raw bytes: nothing can fail to decode.
            if handler.request_deserializer is None:
                return handler
            return _open_method(handler, kwargs)
        metadata = {k: v for k, v in (details.invocation_metadata or ())
                    if isinstance(v, str)}
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, metadata, handler.unary_unary), **kwargs)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._unary_stream(method, metadata, handler.unary_stream), **kwargs)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._stream_stream(method, metadata, handler.stream_stream), **kwargs)
        return handler  # client streaming: no tracker RPC uses it

    def _unary(self, method: str, metadata: dict[str, str], inner: Any) -> Any:
        async def behavior(request: Any, context: Any) -> Any:
            call = Call(method, CallKind.UNARY, metadata, context.peer() or "",
                        request_bytes=request.ByteSize())
            async with serving(self.steps, call, context):
                return await inner(check_decoded(request), context)

        return behavior

    def _unary_stream(self, method: str, metadata: dict[str, str], inner: Any) -> Any:
        async def behavior(request: Any, context: Any) -> AsyncIterator[Any]:
            call = Call(method, CallKind.SERVER_STREAM, metadata, context.peer() or "",
                        request_bytes=request.ByteSize())
            async with serving(self.steps, call, context):
                async for response in responses(inner(check_decoded(request), context)):
                    yield response

        return behavior

    def _stream_stream(self, method: str, metadata: dict[str, str], inner: Any) -> Any:
        async def behavior(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
            call = Call(method, CallKind.BIDI_STREAM, metadata, context.peer() or "")
            async with serving(self.steps, call, context):
                async for response in responses(inner(decoded_stream(requests), context)):
                    yield response

        return behavior


def _open_method(handler: Any, kwargs: dict[str, Any]) -> Any:
    """An open method's handler with the safe deserializer; an undecodable request
    ends the call with INVALID_ARGUMENT before the method runs."""
    if handler.unary_unary is not None:
        inner = handler.unary_unary

        async def unary(request: Any, context: Any) -> Any:
            if isinstance(request, Undecodable):
                await abort(context, invalid_request(request))
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(unary, **kwargs)
    if handler.unary_stream is not None:
        inner_stream = handler.unary_stream

        async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            if isinstance(request, Undecodable):
                await abort(context, invalid_request(request))
            async for response in responses(inner_stream(request, context)):
                yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
    return handler  # no open method streams its requests


async def responses(result: Any) -> AsyncIterator[Any]:
    """Responses of a streaming handler, whether an async generator or a coroutine."""
    if inspect.isasyncgen(result):
        async for response in result:
            yield response
    else:
        await result
