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
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

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


_EXPERIMENTS = "/tracker.v1.ExperimentService/"
_INGEST = "/tracker.v1.IngestService/"
_QUERY = "/tracker.v1.MetricsQueryService/"
_ARTIFACTS = "/tracker.v1.ArtifactService/"
_HEALTH = "/grpc.health.v1.Health/"
_REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/"

METHOD_ROLES: Mapping[str, Role | None] = MappingProxyType({
    _INGEST + "Stream": Role.OPERATOR,
    _INGEST + "LogMetrics": Role.OPERATOR,
    _EXPERIMENTS + "CreateExperiment": Role.OPERATOR,
    _EXPERIMENTS + "GetExperiment": Role.VIEWER,
    _EXPERIMENTS + "ListExperiments": Role.VIEWER,
    _EXPERIMENTS + "UpdateExperiment": Role.OPERATOR,
    _EXPERIMENTS + "CreateRun": Role.OPERATOR,
    _EXPERIMENTS + "GetRun": Role.VIEWER,
    _EXPERIMENTS + "SearchRuns": Role.VIEWER,
    _EXPERIMENTS + "FinishRun": Role.OPERATOR,
    _EXPERIMENTS + "LogParams": Role.OPERATOR,
    _EXPERIMENTS + "SetTags": Role.OPERATOR,
    _EXPERIMENTS + "SetSummary": Role.OPERATOR,
    _EXPERIMENTS + "DefineMetrics": Role.OPERATOR,
    _QUERY + "ListMetricKeys": Role.VIEWER,
    _QUERY + "GetMetricSeries": Role.VIEWER,
    _QUERY + "StreamMetricSeries": Role.VIEWER,
    _QUERY + "GetLatestMetrics": Role.VIEWER,
    _QUERY + "GetBestRuns": Role.VIEWER,
    _QUERY + "CompareRuns": Role.VIEWER,
    _ARTIFACTS + "LogArtifacts": Role.OPERATOR,
    _ARTIFACTS + "ListArtifacts": Role.VIEWER,
    # A verification outcome changes what everyone sees on the run page.
    _ARTIFACTS + "RecordVerification": Role.OPERATOR,
    # Load-balancer and Kubernetes probes carry no key.
    _HEALTH + "Check": None,
    _HEALTH + "List": None,
    _HEALTH + "Watch": None,
    # Describes the API (grpcurl): any key may read what the protos already say.
    _REFLECTION + "ServerReflectionInfo": Role.VIEWER,
})
"""The least role for each full method name (``/pkg.Service/Method``); None: no key needed.

Every method of every served service has an entry (a test walks the descriptors). A
method missing here needs ADMIN, so a new RPC is never open to viewers or operators by
accident: it must be given its role here.
"""

UNLISTED_ROLE = Role.ADMIN
"""The role a method without an entry in :data:`METHOD_ROLES` needs."""


def required_role(full_method: str) -> Role | None:
    """The least role that may call ``full_method``; None for open methods (health)."""
    return METHOD_ROLES.get(full_method, UNLISTED_ROLE)


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
