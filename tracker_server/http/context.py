"""What the HTTP front door is given by the server: the domain services and the same
authenticator, rate limiters and telemetry as the gRPC side."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request

from tracker_server.dashboard import DIST_DIR
from tracker_server.http.sessions import SessionCodec
from tracker_server.storage.server_state import Readiness
from tracker_server.telemetry import Telemetry
from tracker_server.transport.auth import Authenticator
from tracker_server.transport.call import Call, CallKind
from tracker_server.transport.ratelimit import RateLimiter

if TYPE_CHECKING:  # server.py imports this package: no import cycle at run time
    from tracker_server.http.prometheus import Exposition
    from tracker_server.server import Services

DEFAULT_DIST: Path = DIST_DIR
"""Where the dashboard's built bundle lives inside the package."""


@dataclass(frozen=True)
class RateLimits:
    """The server's limiters, shared with gRPC (one bucket per caller across both)."""

    unary: RateLimiter
    points: RateLimiter


@dataclass(frozen=True)
class HttpOptions:
    """HTTP behaviour from settings."""

    body_limit_bytes: int
    cors_origins: tuple[str, ...] = ()
    tls: bool = False
    dist_dir: Path = DEFAULT_DIST


@dataclass(frozen=True)
class HttpContext:
    """Everything a route or the middleware needs; stored on ``app.state.tracker``."""

    services: Services
    auth: Authenticator
    limits: RateLimits
    options: HttpOptions
    sessions: SessionCodec
    telemetry: Telemetry
    ready: Callable[[], Awaitable[Readiness]]
    metrics: Exposition | None = None
    """``GET /metrics`` (None: TRACKER_METRICS=off)."""
    metrics_require_key: bool = False
    """TRACKER_METRICS_REQUIRE_KEY."""


def context(request: Request) -> HttpContext:
    """The app's context."""
    ctx: HttpContext = request.app.state.tracker
    return ctx


def request_call(request: Request) -> Call:
    """The request's record (made by the front-door middleware)."""
    call = request.scope.get("state", {}).get("call")
    if call is None:  # driven without the middleware (a unit test of a route)
        call = Call("", CallKind.UNARY)
        request.scope.setdefault("state", {})["call"] = call
    assert isinstance(call, Call)
    return call
