"""API key checks over the ``KeyStore`` port (the in-memory fake): the key cache, the
authenticator, and the "is auth required" rule of the composition root."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.fakes.key_store import FakeKeyStore
from tests.fakes.memory import InMemoryDatabase
from tests.unit.test_experiment_service import fails
from tracker_server.config import Settings
from tracker_server.domain.access import Role
from tracker_server.domain.errors import Code
from tracker_server.server import auth_required
from tracker_server.transport.auth import Authenticator, KeyCache

CREATE_RUN = "/tracker.v1.ExperimentService/CreateRun"
SEARCH_RUNS = "/tracker.v1.ExperimentService/SearchRuns"


@pytest.fixture
def keys() -> FakeKeyStore:
    return FakeKeyStore(InMemoryDatabase())


def test_keys_are_checked_and_cached(keys: FakeKeyStore) -> None:
    operator = keys.create(Role.OPERATOR)
    viewer = keys.create(Role.VIEWER)
    auth = Authenticator(KeyCache(keys, ttl_s=60))

    async def both() -> None:
        who = await auth.authenticate(CREATE_RUN, f"Bearer {operator.token}")
        assert who.key_id == operator.key_id and who.role == Role.OPERATOR
        await auth.authenticate(CREATE_RUN, f"Bearer {operator.token}")

    asyncio.run(both())
    assert keys.db.api_keys[operator.key_id].lookups == 1  # the second call hit the cache
    assert asyncio.run(auth.authenticate(SEARCH_RUNS, f"Bearer {viewer.token}")).role \
        == Role.VIEWER
    fails(auth.authenticate(CREATE_RUN, f"Bearer {viewer.token}"), Code.PERMISSION_DENIED)
    fails(auth.authenticate(CREATE_RUN, None), Code.UNAUTHENTICATED)
    fails(auth.authenticate(CREATE_RUN, "Bearer trk_000000000000_" + "x" * 43),
          Code.UNAUTHENTICATED)
    fails(auth.authenticate(CREATE_RUN, f"Bearer {operator.token[:-1]}x"), Code.UNAUTHENTICATED)


def test_a_revoked_key_stops_working_once_the_cache_expires(keys: FakeKeyStore) -> None:
    key = keys.create(Role.ADMIN)
    auth = Authenticator(KeyCache(keys, ttl_s=0))
    asyncio.run(auth.authenticate(CREATE_RUN, f"Bearer {key.token}"))
    keys.revoke(key.key_id)
    err = fails(auth.authenticate(CREATE_RUN, f"Bearer {key.token}"), Code.UNAUTHENTICATED)
    assert "revoked" in err.message


def test_auth_required_rule(keys: FakeKeyStore, tmp_path: Path) -> None:
    def required(listen: str, auth: str = "auto") -> bool:
        settings = Settings(listen=listen, auth=auth, data_dir=tmp_path)
        return asyncio.run(auth_required(settings, keys))

    assert not required("127.0.0.1:0")  # loopback, no key yet: open
    assert required("0.0.0.0:0")
    assert required("127.0.0.1:0", "required") and not required("0.0.0.0:0", "off")
    key = keys.create(Role.VIEWER)
    assert required("127.0.0.1:0")  # a key exists: keys are needed
    keys.revoke(key.key_id)
    assert not required("127.0.0.1:0")
