"""The front-door middleware: one record, span and log line per HTTP request, the body
limit, the security headers, and the last word on unexpected errors.

A pure ASGI middleware (no ``BaseHTTPMiddleware``: request bodies stream through it
untouched, and the route sees the same contextvars).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

import structlog
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tracker_server.http.errors import problem
from tracker_server.http.security import HSTS, SECURITY_HEADERS
from tracker_server.telemetry import Telemetry, trace_id_of
from tracker_server.transport.call import Call, CallKind

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_QUIET_PREFIXES = ("/health", "/metrics")
"""Probes and scrapes are not logged (they come every few seconds), as on gRPC."""

log = structlog.get_logger("tracker_server.http")


class FrontDoor:
    """Wraps the whole app (CORS included)."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry, body_limit_bytes: int,
                 tls: bool) -> None:
        self.app = app
        self._telemetry = telemetry
        self._limit = body_limit_bytes
        extra = [HSTS] if tls else []
        self._headers = [(k.lower().encode(), v.encode())
                         for k, v in [*SECURITY_HEADERS.items(), *extra]]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        given = headers.get("x-request-id", "")
        call = Call("", CallKind.UNARY, request_id=given if _REQUEST_ID_RE.match(given)
                    else uuid.uuid4().hex[:16])
        scope.setdefault("state", {})["call"] = call
        call.span = self._telemetry.start_http_span(scope["method"], _text(headers))
        trace_id = trace_id_of(call.span)
        structlog.contextvars.bind_contextvars(
            request_id=call.request_id, **({"trace_id": trace_id} if trace_id else {}))
        status = 500
        started = False
        request_id = call.request_id.encode()

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message["headers"] = [*message.get("headers", ()), *self._headers,
                                      (b"x-request-id", request_id)]
            await send(message)

        try:
            await self._serve(scope, receive, send_with_headers)
        except HTTPException as exc:  # the body limit, hit outside a route's handlers
            if not started:
                response = problem(Request(scope), exc.status_code, str(exc.detail))
                await response(scope, receive, send_with_headers)
        except Exception:
            log.exception("http.unhandled_error", path=scope.get("path"))
            if not started:
                response = problem(Request(scope), 500, "internal error; see the server log "
                                   f"(request id {call.request_id})")
                await response(scope, receive, send_with_headers)
        finally:
            call.finish(str(status))
            self._end(scope, call, status)
            structlog.contextvars.unbind_contextvars("request_id", "trace_id", "key_id")

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app, behind the body limit: a declared length over it is refused before
        the body is read, a streamed body as soon as it passes the limit."""
        limit = self._limit
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = problem(Request(scope), 413, _too_large(limit))
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, _too_large(limit))
            return message

        await self.app(scope, limited, send)

    def _end(self, scope: Scope, call: Call, status: int) -> None:
        route = scope.get("route")
        # Routes without a template (the OpenAPI document) have a fixed path.
        template = (getattr(route, "path", None) or scope.get("tracker_template")
                    or str(scope.get("path", ""))[:200])
        method = scope["method"]
        fields = call.fields()
        self._telemetry.end_http(call.span, method, template, status, call.duration_s,
                                 fields)
        if template.startswith(_QUIET_PREFIXES) and status < 400:
            return
        trace_id = trace_id_of(call.span)
        client = scope.get("client")
        log.info("http", method=method, path=template, status=status,
                 duration_ms=round(call.duration_s * 1000, 2),
                 peer=f"{client[0]}:{client[1]}" if client else "",
                 request_id=call.request_id, **({"rpc": call.method} if call.method else {}),
                 **fields, **({"trace_id": trace_id} if trace_id is not None else {}))


def _text(headers: Headers) -> Mapping[str, str]:
    return {k: v for k, v in headers.items() if k in ("traceparent", "tracestate")}


def _too_large(limit: int) -> str:
    return f"request body larger than {limit} bytes (TRACKER_HTTP_MAX_BODY_BYTES)"
