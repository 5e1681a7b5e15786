"""/api/v1/session: the dashboard's login (API key -> session cookie), who am I, logout.

See ``http/sessions.py`` for what the cookie holds and ``http/security.py`` for how it
is checked on every request.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from tracker_server.domain.access import Role, hash_token, unauthenticated
from tracker_server.http import schemas
from tracker_server.http.context import HttpContext, context
from tracker_server.http.encoding import JsonResponse
from tracker_server.http.errors import PROBLEM_RESPONSES
from tracker_server.http.rpc_map import API_PREFIX
from tracker_server.http.security import Guarded, api_key, check_csrf, session_of
from tracker_server.http.sessions import COOKIE_NAME, Session
from tracker_server.transport.auth import Principal, key_fingerprint

router = APIRouter(prefix=f"{API_PREFIX}/session", tags=["session"], responses=PROBLEM_RESPONSES)

COOKIE_PATH = "/api"


def _info(ctx: HttpContext, principal: Principal, session: Session | None) -> dict[str, object]:
    role = principal.role if ctx.auth.enabled else Role.ADMIN
    return {"role": role.label if role else None, "key_id": principal.key_id,
            "csrf_token": ctx.sessions.csrf_token(session) if session else None,
            "auth": ctx.auth.enabled}


def _set_cookie(response: Response, ctx: HttpContext, value: str) -> None:
    response.set_cookie(COOKIE_NAME, value, max_age=int(ctx.sessions.ttl_s), path=COOKIE_PATH,
                        secure=ctx.options.tls, httponly=True, samesite="strict")


@router.post("", response_model=schemas.SessionInfo, summary="Log in with an API key")
async def login(request: Request, _: Guarded, body: schemas.SessionLogin) -> JsonResponse:
    """Sets an HttpOnly, SameSite=Strict session cookie (Secure under TLS) and returns
    the CSRF token state-changing requests must send as ``X-CSRF-Token``."""
    ctx = context(request)
    principal = await ctx.auth.identify(body.api_key)
    fingerprint = key_fingerprint(hash_token(body.api_key)) if principal.key_id else None
    value, session = ctx.sessions.issue(principal.key_id, fingerprint)
    response = JsonResponse(_info(ctx, principal, session))
    _set_cookie(response, ctx, value)
    return response


@router.get("", response_model=schemas.SessionInfo, summary="The current session")
async def current(request: Request, _: Guarded) -> JsonResponse:
    """The session of the cookie (or the key of the request); 401 without one. With auth
    off: an anonymous admin session, created on first call."""
    ctx = context(request)
    key = api_key(request)
    if key is not None:
        return JsonResponse(_info(ctx, await ctx.auth.identify(key), None))
    session = session_of(request, ctx)
    if session is not None and session.key_id is not None and session.key_fingerprint:
        principal = await ctx.auth.identify_session(session.key_id, session.key_fingerprint)
        return JsonResponse(_info(ctx, principal, session))
    if ctx.auth.enabled:
        raise unauthenticated("not logged in: POST /api/v1/session with an API key")
    if session is not None:
        return JsonResponse(_info(ctx, Principal(), session))
    value, session = ctx.sessions.issue(None, None)
    response = JsonResponse(_info(ctx, Principal(), session))
    _set_cookie(response, ctx, value)
    return response


@router.delete("", status_code=204, summary="Log out")
async def logout(request: Request, _: Guarded) -> Response:
    """Clears the cookie (with the session's CSRF token, when the session is valid)."""
    ctx = context(request)
    session = session_of(request, ctx)
    if session is not None:
        check_csrf(request, ctx, session)
    response = Response(status_code=204)
    response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH, secure=ctx.options.tls,
                           httponly=True, samesite="strict")
    return response
