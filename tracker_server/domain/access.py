"""Who may call what: roles, the method policy, and the API key format.

Pure functions and constants (no grpc, no database): the transport's auth interceptor
and the ``tracker-server keys`` command both build on them.

A key reads ``trk_<key_id>_<secret>``: ``key_id`` (12 hex digits) is public and is what
logs, ``keys list`` and the database show; ``secret`` (43 URL-safe characters, 256 bits)
is shown once at creation. The database stores only SHA-256 of the whole key; a fast
hash is enough because the secret is random, not a password.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from tracker_server.domain.errors import Code, TrackerError

KEY_PREFIX = "trk"
_KEY_RE = re.compile(r"^trk_([0-9a-f]{12})_([A-Za-z0-9_-]{32,128})$")


class Role(enum.IntEnum):
    """Roles in increasing power; each includes everything below it."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        """``viewer`` / ``operator`` / ``admin`` (case-insensitive)."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(
                f"role must be one of viewer, operator, admin; got {text!r}"
            ) from None

    @property
    def label(self) -> str:
        """Lower-case name, as stored and printed."""
        return self.name.lower()


# Methods that only read. Everything else on a tracker service needs OPERATOR; unknown
# methods (added later, not yet classified) need ADMIN, so a new write RPC is never
# silently open to viewers.
_VIEWER_SERVICES = frozenset({"tracker.v1.MetricsQueryService"})
_VIEWER_PREFIXES = ("Get", "List", "Search", "Compare")
_OPERATOR_SERVICES = frozenset({"tracker.v1.IngestService", "tracker.v1.ExperimentService"})
OPEN_SERVICES = frozenset({"grpc.health.v1.Health"})
"""Services callable without a key (load-balancer and Kubernetes probes)."""


def split_method(full_method: str) -> tuple[str, str]:
    """``/pkg.Service/Method`` -> (``pkg.Service``, ``Method``)."""
    _, service, method = [*full_method.split("/", 2), "", ""][:3]
    return service, method


def required_role(full_method: str) -> Role | None:
    """The least role that may call ``full_method``; None for open services."""
    service, method = split_method(full_method)
    if service in OPEN_SERVICES:
        return None
    if service in _VIEWER_SERVICES or (
        service in _OPERATOR_SERVICES and method.startswith(_VIEWER_PREFIXES)
    ):
        return Role.VIEWER
    if service in _OPERATOR_SERVICES:
        return Role.OPERATOR
    return Role.ADMIN


@dataclass(frozen=True)
class NewKey:
    """A freshly generated key: the token is shown once, only the hash is stored."""

    key_id: str
    token: str
    secret_hash: bytes


def generate_key() -> NewKey:
    """A new random key (``trk_<12 hex>_<43 url-safe chars>``)."""
    key_id = secrets.token_hex(6)
    token = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    return NewKey(key_id, token, hash_token(token))


def hash_token(token: str) -> bytes:
    """SHA-256 of the whole key."""
    return hashlib.sha256(token.encode()).digest()


def parse_token(token: str) -> str | None:
    """The key id of a well-formed key, None otherwise (no database round trip)."""
    match = _KEY_RE.match(token)
    return match[1] if match else None


def token_matches(token: str, secret_hash: bytes) -> bool:
    """Constant-time comparison of a presented key with a stored hash."""
    return hmac.compare_digest(hash_token(token), secret_hash)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``authorization: Bearer <token>`` header value."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def unauthenticated(message: str) -> TrackerError:
    """UNAUTHENTICATED: no usable key."""
    return TrackerError(Code.UNAUTHENTICATED, message)


def permission_denied(message: str) -> TrackerError:
    """PERMISSION_DENIED: a valid key whose role is too low."""
    return TrackerError(Code.PERMISSION_DENIED, message)
