"""``tracker-server keys`` and the start-up rules of auth, as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import grpc
import pytest

from tests.support import ServerProcess, free_port
from tracker_proto.v1 import experiments_pb2, experiments_pb2_grpc


def keys(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "tracker_server", "keys", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_create_list_revoke(database_url: str) -> None:
    created = keys(database_url, "create", "--role", "admin", "--name", "bootstrap")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("trk_") and len(token.split("_", 2)[2]) >= 40
    key_id = token.split("_")[1]
    assert "cannot be shown again" in created.stderr

    listed = keys(database_url, "list", "--json")
    rows = json.loads(listed.stdout)
    assert [(r["key_id"], r["role"], r["name"]) for r in rows] == [(key_id, "admin", "bootstrap")]
    assert token not in listed.stdout
    table = keys(database_url, "list").stdout
    assert key_id in table and token.split("_", 2)[2] not in table

    revoked = keys(database_url, "revoke", token)  # a whole key works as well as its id
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(keys(database_url, "list", "--json").stdout) == []
    assert json.loads(keys(database_url, "list", "--all", "--json").stdout)[0]["revoked_at"]
    missing = keys(database_url, "revoke", "0123456789ab")
    assert missing.returncode == 1 and "no key" in missing.stderr


def test_bad_role_is_a_usage_error(database_url: str) -> None:
    result = keys(database_url, "create", "--role", "root", "--name", "x")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_created_key_works_against_a_required_server(database_url: str) -> None:
    token = keys(database_url, "create", "--role", "viewer", "--name", "ci").stdout.strip()
    server = ServerProcess(database_url, TRACKER_AUTH="required")
    server.start()
    try:
        with grpc.insecure_channel(server.address) as ch:
            stub = experiments_pb2_grpc.ExperimentServiceStub(ch)
            req = experiments_pb2.ListExperimentsRequest()
            stub.ListExperiments(req, timeout=10, metadata=(("authorization", f"Bearer {token}"),))
            with pytest.raises(grpc.RpcError) as info:
                stub.ListExperiments(req, timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        server.terminate()


def _start(database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "DATABASE_URL": database_url, "TRACKER_LOG_LEVEL": "warning", **env}
    return subprocess.run([sys.executable, "-m", "tracker_server"], env=full,
                          capture_output=True, text=True, timeout=60)


def test_auth_off_on_a_public_address_refuses_to_start(database_url: str) -> None:
    # Refused while validating settings, before anything binds.
    result = _start(database_url, TRACKER_LISTEN=f"0.0.0.0:{free_port()}", TRACKER_AUTH="off")
    assert result.returncode == 2
    assert "TRACKER_ALLOW_OPEN_NETWORK" in result.stderr


def test_half_configured_tls_refuses_to_start(database_url: str) -> None:
    result = _start(database_url, TRACKER_LISTEN=f"127.0.0.1:{free_port()}",
                    TRACKER_TLS_CERT="/nonexistent.pem")
    assert result.returncode == 2
    assert "TRACKER_TLS_KEY" in result.stderr
