"""Who may do what over HTTP: API keys, session cookies, CSRF, origins, headers, CORS.

Every API route runs :func:`guard` first. It finds the gRPC method the route stands for
(``rpc_map``), authenticates the caller with the gRPC side's Authenticator (same keys,
key cache, roles and ``TRACKER_AUTH`` rule), and takes the same rate-limit tokens
(``transport/call_steps.RateLimit`` over the request's Call record).

Credentials, in this order: ``X-API-Key: <key>``, ``Authorization: Bearer <key>``
(scripts; no cookie, no CSRF), the session cookie (the dashboard; a state-changing
request must carry the session's ``X-CSRF-Token``). A state-changing request whose
``Origin`` is neither this server nor in ``TRACKER_HTTP_CORS_ORIGINS`` is refused,
whatever its credentials, which also protects a server with auth off from other sites.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request

from tracker_server.domain.access import bearer_token, permission_denied, unauthenticated
from tracker_server.domain.errors import TrackerError
from tracker_server.http.context import HttpContext, context, request_call
from tracker_server.http.rpc_map import Rpc, rpc_of
from tracker_server.http.sessions import COOKIE_NAME, CSRF_HEADER, Session
from tracker_server.transport.auth import ANONYMOUS, Principal
from tracker_server.transport.call_steps import RateLimit

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
       "form-action 'self'")
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
HSTS = ("Strict-Transport-Security", "max-age=31536000")
"""Added under TLS."""

_NO_KEY = ("missing API key: send 'X-API-Key: trk_...' or 'Authorization: Bearer trk_...', "
           "or log in (POST /api/v1/session)")


def api_key(request: Request) -> str | None:
    """The key a script sent (X-API-Key, else an ``Authorization: Bearer`` header)."""
    key = request.headers.get("x-api-key")
    if key is not None:
        return key.strip()
    authorization = request.headers.get("authorization")
    if authorization is None:
        return None
    token = bearer_token(authorization)
    if token is None:
        raise unauthenticated("the Authorization header must read 'Bearer <API key>'")
    return token


def session_of(request: Request, ctx: HttpContext) -> Session | None:
    """The verified session of the request's cookie (None: no cookie, or a forged,
    malformed or expired one)."""
    cookie = request.cookies.get(COOKIE_NAME)
    return ctx.sessions.verify(cookie) if cookie else None


def check_csrf(request: Request, ctx: HttpContext, session: Session) -> None:
    """A state-changing request made with the cookie must carry its CSRF token."""
    if request.method not in SAFE_METHODS and not ctx.sessions.csrf_ok(
            session, request.headers.get(CSRF_HEADER)):
        raise permission_denied(f"missing or wrong {CSRF_HEADER} header (GET /api/v1/session "
                                "returns the token)")


def own_origin(request: Request) -> str:
    """This server's origin as the browser sees it."""
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


def check_origin(request: Request, ctx: HttpContext) -> None:
    """Refuse state-changing requests from pages of other origins."""
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("origin")
    if origin is not None:
        if origin != own_origin(request) and origin not in ctx.options.cors_origins:
            raise permission_denied(f"requests from origin {origin[:100]} are not allowed "
                                    "(TRACKER_HTTP_CORS_ORIGINS)")
    elif request.headers.get("sec-fetch-site") == "cross-site":
        raise permission_denied("cross-site requests are not allowed")


async def principal_of(request: Request, ctx: HttpContext, method: str) -> Principal:
    """Authenticate the caller and check its role for ``method``."""
    auth = ctx.auth
    key = api_key(request)
    if key is not None:
        return auth.authorize(method, await auth.identify(key))
    session = session_of(request, ctx)
    if session is not None:
        check_csrf(request, ctx, session)
        if session.key_id is not None and session.key_fingerprint is not None:
            found = await auth.identify_session(session.key_id, session.key_fingerprint)
            return auth.authorize(method, found)
    try:  # no credentials: fine with auth off or for an open method
        return auth.authorize(method, ANONYMOUS)
    except TrackerError:
        raise unauthenticated(_NO_KEY) from None


def _peer(request: Request) -> str:
    """The client in gRPC's peer format, so both doors share a peer's rate bucket."""
    if request.client is None:
        return ""
    host, port = request.client.host, request.client.port
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


async def guard(request: Request) -> Principal:
    """The dependency of every API route: origin, credentials, role, rate limit."""
    ctx = context(request)
    call = request_call(request)
    route = request.scope.get("route")
    rpc: Rpc = rpc_of(request.method, getattr(route, "path", ""))
    call.method = rpc.method or ""
    call.peer = _peer(request)
    check_origin(request, ctx)
    principal = ANONYMOUS
    if rpc.method is not None:
        principal = await principal_of(request, ctx, rpc.method)
    if principal.key_id is not None:
        call.key_id = principal.key_id
        call.role = principal.role.label if principal.role else None
        structlog.contextvars.bind_contextvars(key_id=principal.key_id)
    if rpc.limited:
        await RateLimit(ctx.limits.unary, ctx.limits.points).begin(call)
    return principal


Guarded = Annotated[Principal, Depends(guard)]
"""A route parameter that runs :func:`guard` and gives the caller."""


def cors_options(origins: tuple[str, ...]) -> dict[str, Any]:
    """Starlette CORSMiddleware options for the allowlisted origins: credentials
    allowed, so never ``*``."""
    return {
        "allow_origins": list(origins),
        "allow_credentials": True,
        "allow_methods": ["GET", "POST", "PATCH", "DELETE"],
        "allow_headers": ["Content-Type", "X-API-Key", "Authorization", CSRF_HEADER,
                          "X-Request-ID", "traceparent"],
        "expose_headers": ["Retry-After", "X-Request-ID"],
        "max_age": 600,
    }
