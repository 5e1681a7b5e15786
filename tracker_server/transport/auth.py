"""API key authentication and role checks for the call interceptor.

Keys are looked up by their public id through a small in-memory cache with a TTL, so
an ingest stream or a busy dashboard never costs a database round trip per call; a
revoked key therefore keeps working for at most ``ttl_s`` on servers that saw it
recently. Concurrent misses for one key share one lookup.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from dataclasses import dataclass

from tracker_server.domain.access import (
    Role,
    bearer_token,
    parse_token,
    permission_denied,
    required_role,
    token_matches,
    unauthenticated,
)
from tracker_server.domain.api_keys import KeyRecord
from tracker_server.domain.errors import TrackerError, unavailable
from tracker_server.domain.ports import KeyLookup

_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key (id and role), or nobody when auth is off / not needed."""

    key_id: str | None = None
    role: Role | None = None


ANONYMOUS = Principal()


class KeyCache:
    """Key records by id for ``ttl_s`` seconds (unknown ids too, so junk is cheap)."""

    def __init__(self, store: KeyLookup, ttl_s: float) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, KeyRecord | None]] = {}
        self._loading: dict[str, asyncio.Future[KeyRecord | None]] = {}

    async def get(self, key_id: str) -> KeyRecord | None:
        """The cached record, refreshed from the store once it is older than the TTL."""
        entry = self._entries.get(key_id)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        loading = self._loading.get(key_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load(key_id))
            self._loading[key_id] = loading
        return await asyncio.shield(loading)

    async def _load(self, key_id: str) -> KeyRecord | None:
        try:
            record = await self._store.lookup(key_id)
        except Exception as exc:
            raise unavailable(f"cannot check the API key: {exc}", retry_after_s=1.0) from exc
        finally:
            self._loading.pop(key_id, None)
        if len(self._entries) >= _MAX_ENTRIES:
            now = time.monotonic()
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()  # flooded with fresh junk ids: start over
        self._entries[key_id] = (time.monotonic() + self._ttl_s, record)
        return record


class Authenticator:
    """Turns the ``authorization`` metadata of a call into a :class:`Principal`."""

    def __init__(self, cache: KeyCache | None) -> None:
        """``cache=None`` means auth is off: every call is anonymous and allowed."""
        self._cache = cache

    @property
    def enabled(self) -> bool:
        """Whether calls need a key."""
        return self._cache is not None

    async def authenticate(self, method: str, authorization: str | None) -> Principal:
        """The caller of ``method``; raises UNAUTHENTICATED / PERMISSION_DENIED."""
        if self._cache is None:
            return ANONYMOUS
        needed = required_role(method)
        if needed is None:
            return ANONYMOUS
        token = bearer_token(authorization)
        if token is None:
            raise unauthenticated(
                "missing API key: send metadata 'authorization: Bearer trk_...' "
                "(TRACKER_API_KEY for the client and the CLI)"
            )
        return self.authorize(method, await self.identify(token))

    async def identify(self, token: str) -> Principal:
        """The key behind ``token``, whatever its role (the dashboard's login); raises
        UNAUTHENTICATED. Auth off: anonymous."""
        if self._cache is None:
            return ANONYMOUS
        key_id = parse_token(token)
        if key_id is None:
            raise unauthenticated("malformed API key (expected trk_<id>_<secret>)")
        record = await self._cache.get(key_id)
        if record is None or not token_matches(token, record.secret_hash):
            raise unauthenticated(f"unknown API key {key_id}")
        return self._active(key_id, record)

    async def identify_session(self, key_id: str, fingerprint: str) -> Principal:
        """The key a session was issued for (``fingerprint``: its :func:`key_fingerprint`
        then), re-read through the cache: a revoked or replaced key ends its sessions
        within the cache TTL. Raises UNAUTHENTICATED. Auth off: anonymous."""
        if self._cache is None:
            return ANONYMOUS
        record = await self._cache.get(key_id)
        if record is None or not hmac.compare_digest(key_fingerprint(record.secret_hash),
                                                     fingerprint):
            raise unauthenticated(f"the session's API key {key_id} no longer exists")
        return self._active(key_id, record)

    def authorize(self, method: str, principal: Principal) -> Principal:
        """``principal`` if its role may call ``method``; raises PERMISSION_DENIED.
        Auth off, or an open method: anonymous."""
        needed = required_role(method)
        if self._cache is None or needed is None:
            return ANONYMOUS
        role = principal.role
        if role is None or role < needed:
            label = role.label if role is not None else "none"
            raise permission_denied(
                f"API key {principal.key_id} has role {label}; {method} needs {needed.label}"
            )
        return principal

    @staticmethod
    def _active(key_id: str, record: KeyRecord) -> Principal:
        if record.revoked:
            raise unauthenticated(f"API key {key_id} is revoked")
        return Principal(key_id, record.role)


def key_fingerprint(secret_hash: bytes) -> str:
    """A short public digest of a stored key hash: what a session records to stay bound
    to exactly the key it was issued for."""
    return hashlib.sha256(b"tracker-session:" + secret_hash).hexdigest()[:16]


__all__ = ["ANONYMOUS", "Authenticator", "KeyCache", "KeyLookup", "Principal", "TrackerError",
           "key_fingerprint"]
