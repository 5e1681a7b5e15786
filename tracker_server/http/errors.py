"""The one place where errors become HTTP responses: ``application/problem+json``
(RFC 9457) ``{type, title, status, detail, instance, code, request_id, errors?}``.

Domain errors (TrackerError) map to the status of their code, field violations to
``errors: [{field, message, position?}]`` with the REST field names of the route;
request validation errors (FastAPI's, pydantic's) become 400 naming the field instead of
FastAPI's 422; Starlette's own errors (404, 405, 413) keep their status.
"""

from __future__ import annotations

import http
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from tracker_server.domain.errors import Code, TrackerError
from tracker_server.http.encoding import JsonResponse
from tracker_server.http.rpc_map import rest_field, rpc_of
from tracker_server.http.schemas import Problem

PROBLEM_TYPE = "application/problem+json"

HTTP_STATUS: Mapping[Code, int] = {
    Code.INVALID_ARGUMENT: 400,
    Code.UNAUTHENTICATED: 401,
    Code.PERMISSION_DENIED: 403,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.ABORTED: 409,
    Code.FAILED_PRECONDITION: 412,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.UNAVAILABLE: 503,
    Code.DEADLINE_EXCEEDED: 504,  # as grpc-gateway maps it: the server gave up waiting
}
_CODE_OF_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                   404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 409: "ALREADY_EXISTS",
                   412: "FAILED_PRECONDITION", 413: "PAYLOAD_TOO_LARGE",
                   415: "UNSUPPORTED_MEDIA_TYPE", 429: "RESOURCE_EXHAUSTED",
                   500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": Problem, "description": "a client error, as application/problem+json"},
    "5XX": {"model": Problem,
            "description": "503: retry after Retry-After seconds; 504: a deadline ran out"},
}
"""The error responses every API route documents."""
# Union members and wrappers pydantic puts into an error's location.
_TYPE_TAG = re.compile(r"^(int|str|float|bool|none|[a-z]+(-[a-z]+)+|[a-z-]+\[.*\])$")


class ProblemResponse(JsonResponse):
    """A problem document."""

    media_type = PROBLEM_TYPE


def problem(
    request: Request | None,
    status: int,
    detail: str,
    *,
    code: str | None = None,
    errors: Sequence[Mapping[str, Any]] = (),
    retry_after_s: float | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A problem+json response."""
    code = code or _CODE_OF_STATUS.get(status, "UNKNOWN")
    body: dict[str, Any] = {
        "type": f"/api/docs#error-{code.lower().replace('_', '-')}",
        "title": http.HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path if request is not None else None,
        "code": code,
    }
    call = request.scope.get("state", {}).get("call") if request is not None else None
    if call is not None and call.request_id:
        body["request_id"] = call.request_id
    if errors:
        body["errors"] = list(errors)
    out = dict(headers or {})
    if retry_after_s is not None:
        out["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
    if status == 401:
        out.setdefault("WWW-Authenticate", 'Bearer realm="tracker"')
    return ProblemResponse(body, status_code=status, headers=out)


def _route_fields(request: Request) -> Mapping[str, str]:
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return rpc_of(request.method, path).fields if path else {}


def tracker_error(request: Request, error: TrackerError) -> Response:
    """A domain error."""
    fields = _route_fields(request)
    position = getattr(error, "position", None)
    errors = []
    for name, message in error.field_violations[:100]:
        entry: dict[str, Any] = {"field": rest_field(fields, name), "message": message}
        if position is not None:
            entry["position"] = position
        errors.append(entry)
    return problem(request, HTTP_STATUS[error.code], error.message, code=error.code.value,
                   errors=errors, retry_after_s=error.retry_after_s)


def _field(loc: Sequence[Any]) -> tuple[str, list[str]]:
    """A pydantic location as ``points[3].step`` and the union tags it went through."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]
    out, tags = "", []
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _TYPE_TAG.match(str(part)):
            tags.append(str(part))
        else:
            out += ("." if out else "") + str(part)
    return out or "body", tags


def _message(tags: list[str], messages: list[str]) -> str:
    if any(t.startswith("literal['NaN'") for t in tags):
        return 'must be a number or one of "NaN", "Infinity", "-Infinity"'
    if any("int" in t for t in tags) and any("str" in t for t in tags):
        return "must be an integer in the int64 range, as a number or a decimal string"
    return "; or ".join(dict.fromkeys(messages))


def validation_errors(raw: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """pydantic / FastAPI error entries -> ``[{field, message, position?}]``, one entry
    per field (the branches of a union merged)."""
    grouped: dict[str, tuple[list[str], list[str], int | None]] = {}
    for err in raw:
        loc = list(err.get("loc", ()))
        position = None
        if err.get("type") == "json_invalid":
            position = next((p for p in loc[1:] if isinstance(p, int)), None)
            loc = loc[:1]
        name, tags = _field(loc)
        message = str(err.get("msg", "invalid"))
        ctx = err.get("ctx") or {}
        if err.get("type") == "json_invalid" and ctx.get("error"):
            message = f"invalid JSON: {ctx['error']}"
        entry = grouped.setdefault(name, ([], [], position))
        entry[0].extend(tags)
        entry[1].append(message)
    out = []
    for name, (tags, messages, position) in list(grouped.items())[:100]:
        item: dict[str, Any] = {"field": name, "message": _message(tags, messages)}
        if position is not None:
            item["position"] = position
        out.append(item)
    return out


def invalid_request(request: Request, raw: Sequence[Mapping[str, Any]]) -> Response:
    """400 for a request that does not fit the schema."""
    fields = _route_fields(request)
    errors = [{**e, "field": rest_field(fields, e["field"])} for e in validation_errors(raw)]
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    return problem(request, 400, f"invalid request: {summary}", code="INVALID_ARGUMENT",
                   errors=errors)


def http_error(request: Request, exc: HTTPException) -> Response:
    """Starlette's own errors: unknown route, method not allowed, body too large."""
    detail = exc.detail if isinstance(exc.detail, str) else http.HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no endpoint {request.method} {request.url.path}"
    return problem(request, exc.status_code, detail, headers=exc.headers)


def install(app: FastAPI) -> None:
    """Register the handlers."""

    async def on_tracker_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TrackerError)
        return tracker_error(request, exc)

    async def on_request_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError | pydantic.ValidationError)
        return invalid_request(request, exc.errors())

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return http_error(request, exc)

    app.add_exception_handler(TrackerError, on_tracker_error)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(pydantic.ValidationError, on_request_validation)
    app.add_exception_handler(HTTPException, on_http_error)
