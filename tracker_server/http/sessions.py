"""Dashboard sessions: a signed cookie naming the API key, and its CSRF token.

The cookie holds ``base64url(json) "." base64url(HMAC-SHA256)`` of ``{v, sid, kid, kfp,
exp}``: a random session id, the key id and a fingerprint of that key's stored hash (so
the session is bound to exactly that key), and the expiry. No key secret is in it, and
nothing is stored on the server: every request re-checks the key through the key cache,
so revoking the key ends its sessions within the cache TTL. With auth off the session is
anonymous (``kid`` null) and exists only to carry the CSRF token.

The CSRF token is ``HMAC(csrf key, sid)``: bound to the session, checked in constant time
on every state-changing request that authenticates with the cookie (header
``X-CSRF-Token``). Both keys derive from one secret, ``TRACKER_HTTP_SESSION_SECRET`` or a
random one kept in the database (so every server process on it agrees).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE_NAME = "tracker_session"
CSRF_HEADER = "X-CSRF-Token"
_VERSION = 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    """A verified session."""

    session_id: str
    key_id: str | None
    key_fingerprint: str | None
    expires_at: float


class SessionCodec:
    """Issues and verifies session cookies and CSRF tokens."""

    def __init__(self, secret: bytes, ttl_s: float) -> None:
        self._sign_key = hmac.new(secret, b"tracker session cookie", hashlib.sha256).digest()
        self._csrf_key = hmac.new(secret, b"tracker csrf token", hashlib.sha256).digest()
        self.ttl_s = ttl_s

    def issue(self, key_id: str | None, key_fingerprint: str | None) -> tuple[str, Session]:
        """A new session and its cookie value."""
        session = Session(secrets.token_urlsafe(16), key_id, key_fingerprint,
                          time.time() + self.ttl_s)
        body = json.dumps({"v": _VERSION, "sid": session.session_id, "kid": key_id,
                           "kfp": key_fingerprint, "exp": int(session.expires_at)},
                          separators=(",", ":")).encode()
        payload = _b64(body)
        return f"{payload}.{self._sign(payload)}", session

    def verify(self, cookie: str) -> Session | None:
        """The session of a cookie value; None when forged, malformed or expired."""
        payload, _, signature = cookie.partition(".")
        if not payload or not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            body = json.loads(_unb64(payload))
        except (binascii.Error, ValueError):
            return None
        if not isinstance(body, dict) or body.get("v") != _VERSION:
            return None
        sid, kid, kfp, exp = (body.get(k) for k in ("sid", "kid", "kfp", "exp"))
        if not isinstance(sid, str) or not isinstance(exp, int) or exp < time.time():
            return None
        if not (kid is None or isinstance(kid, str)) or not (kfp is None or isinstance(kfp, str)):
            return None
        return Session(sid, kid, kfp, float(exp))

    def csrf_token(self, session: Session) -> str:
        """The CSRF token of a session."""
        return _b64(hmac.new(self._csrf_key, session.session_id.encode(),
                             hashlib.sha256).digest())

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        """Whether ``token`` is the session's CSRF token."""
        return token is not None and hmac.compare_digest(self.csrf_token(session), token)

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._sign_key, payload.encode(), hashlib.sha256).digest())
