"""``KeyStore`` (and so ``KeyLookup``) in memory."""

from __future__ import annotations

from tests.fakes.memory import InMemoryDatabase, StoredKey
from tracker_server.domain.access import NewKey, Role, generate_key
from tracker_server.domain.api_keys import KeyRecord


class FakeKeyStore:
    """API keys of an :class:`InMemoryDatabase`; :meth:`create` and :meth:`revoke`
    stand in for the ``keys`` CLI."""

    def __init__(self, db: InMemoryDatabase) -> None:
        self.db = db

    def create(self, role: Role, name: str = "test") -> NewKey:
        """A new key (its token is what a caller presents)."""
        key = generate_key()
        self.db.api_keys[key.key_id] = StoredKey(name, role, key.secret_hash)
        return key

    def revoke(self, key_id: str) -> None:
        """Revoke a key (idempotent)."""
        self.db.api_keys[key_id].revoked = True

    async def lookup(self, key_id: str) -> KeyRecord | None:
        """See ``KeyLookup.lookup``; counts lookups (``StoredKey.lookups``) so a test
        can see what the cache saved."""
        stored = self.db.api_keys.get(key_id)
        if stored is None:
            return None
        stored.lookups += 1
        return KeyRecord(stored.role, stored.secret_hash, stored.revoked)

    async def active_count(self) -> int:
        """See ``KeyStore.active_count``."""
        return sum(not k.revoked for k in self.db.api_keys.values())
