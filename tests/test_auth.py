"""API keys and roles against a real server with ``auth=required``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import tracker_client
from tests.support import Api, ServerThread, batch_req, columns, count_points, open_req
from tracker_proto.v1 import experiments_pb2, query_pb2, query_pb2_grpc
from tracker_server.config import Settings
from tracker_server.domain.access import Role, generate_key
from tracker_server.storage import key_store as keys_store


def make_key(database_url: str, role: str, name: str = "test") -> str:
    """Create a key directly in the database; return the token."""
    key = generate_key()
    with psycopg.connect(database_url) as conn:
        keys_store.create_key(conn, key, name, Role.parse(role))
    return key.token


def md(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def auth_server(settings: Settings) -> Iterator[ServerThread]:
    srv = ServerThread(replace(settings, auth="required", key_cache_ttl_s=0.3))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def api(auth_server: ServerThread) -> Iterator[Api]:
    client = Api(auth_server.address)
    try:
        yield client
    finally:
        client.close()


def _code(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value.code()  # type: ignore[no-any-return]


def test_missing_malformed_and_unknown_keys_are_unauthenticated(api: Api) -> None:
    req = experiments_pb2.ListExperimentsRequest()
    stub = api.experiments
    assert _code(lambda: stub.ListExperiments(req)) == grpc.StatusCode.UNAUTHENTICATED
    assert _code(lambda: stub.ListExperiments(req, metadata=md("nope"))) == \
        grpc.StatusCode.UNAUTHENTICATED
    assert _code(lambda: stub.ListExperiments(
        req, metadata=(("authorization", "Basic abc"),))) == grpc.StatusCode.UNAUTHENTICATED
    unknown = generate_key().token  # well-formed, never stored
    assert _code(lambda: stub.ListExperiments(req, metadata=md(unknown))) == \
        grpc.StatusCode.UNAUTHENTICATED
    stream = lambda: list(api.ingest.Stream(iter([open_req("x", "w")]), timeout=10))  # noqa: E731
    assert _code(stream) == grpc.StatusCode.UNAUTHENTICATED


def test_wrong_secret_for_a_known_id_is_unauthenticated(api: Api, database_url: str) -> None:
    token = make_key(database_url, "admin")
    forged = token[: token.rindex("_") + 1] + "A" * 43
    assert _code(lambda: api.experiments.ListExperiments(
        experiments_pb2.ListExperimentsRequest(), metadata=md(forged))) == \
        grpc.StatusCode.UNAUTHENTICATED


def test_viewer_reads_but_cannot_write(api: Api, database_url: str) -> None:
    operator, viewer = make_key(database_url, "operator"), make_key(database_url, "viewer")
    exp = api.experiments.CreateExperiment(
        experiments_pb2.CreateExperimentRequest(name="e"), metadata=md(operator)).experiment
    run = api.experiments.CreateRun(
        experiments_pb2.CreateRunRequest(experiment_id=exp.experiment_id, run_key="k"),
        metadata=md(operator)).run
    api.experiments.ListExperiments(experiments_pb2.ListExperimentsRequest(), metadata=md(viewer))
    api.experiments.GetRun(experiments_pb2.GetRunRequest(run_id=run.run_id), metadata=md(viewer))
    query = query_pb2_grpc.MetricsQueryServiceStub(api.channel)
    query.ListMetricKeys(query_pb2.ListMetricKeysRequest(run_id=run.run_id), metadata=md(viewer))

    with pytest.raises(grpc.RpcError) as info:
        api.experiments.CreateExperiment(
            experiments_pb2.CreateExperimentRequest(name="v"), metadata=md(viewer))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "viewer" in (info.value.details() or "")
    stream = lambda: list(api.ingest.Stream(  # noqa: E731
        iter([open_req(run.run_id, "w")]), timeout=10, metadata=md(viewer)))
    assert _code(stream) == grpc.StatusCode.PERMISSION_DENIED


def test_operator_ingests(api: Api, database_url: str) -> None:
    token = make_key(database_url, "operator")
    exp = api.experiments.CreateExperiment(
        experiments_pb2.CreateExperimentRequest(name="e"), metadata=md(token)).experiment
    run_id = api.experiments.CreateRun(
        experiments_pb2.CreateRunRequest(experiment_id=exp.experiment_id, run_key="k"),
        metadata=md(token)).run.run_id
    cols = columns(["loss"], [0, 0, 0], [1, 2, 3], [0.3, 0.2, 0.1])
    responses = list(api.ingest.Stream(
        iter([open_req(run_id, "w"), batch_req(1, cols)]), timeout=30, metadata=md(token)))
    assert responses[-1].ack.committed_through_seq == 1
    assert count_points(database_url, run_id) == 3


def test_revocation_takes_effect_within_the_cache_ttl(api: Api, database_url: str) -> None:
    token = make_key(database_url, "viewer")
    req = experiments_pb2.ListExperimentsRequest()
    api.experiments.ListExperiments(req, metadata=md(token))
    with psycopg.connect(database_url) as conn:
        assert keys_store.revoke_key(conn, token.split("_")[1]) is not None
    time.sleep(0.5)  # > key_cache_ttl_s
    with pytest.raises(grpc.RpcError) as info:
        api.experiments.ListExperiments(req, metadata=md(token))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in (info.value.details() or "")


def test_last_used_is_recorded(api: Api, database_url: str) -> None:
    token = make_key(database_url, "viewer")
    with psycopg.connect(database_url) as conn:
        assert keys_store.list_keys(conn)[0].last_used_at is None
    for _ in range(3):
        api.experiments.ListExperiments(experiments_pb2.ListExperimentsRequest(),
                                        metadata=md(token))
    with psycopg.connect(database_url) as conn:
        assert keys_store.list_keys(conn)[0].last_used_at is not None


def test_health_needs_no_key(auth_server: ServerThread) -> None:
    with grpc.insecure_channel(auth_server.address) as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_client_library_sends_the_key(auth_server: ServerThread, database_url: str,
                                      tmp_path: Path) -> None:
    opt = tracker_client.Options(spool_dir=tmp_path, recover_orphans=False,
                                 system_metrics_interval_s=None)
    token = make_key(database_url, "operator")
    with tracker_client.init(experiment="auth", server=auth_server.address, api_key=token,
                             options=opt) as run:
        run.log({"loss": 1.0}, step=1)
        run.flush(timeout=20)
    assert count_points(database_url, run.run_id or "") == 1
    viewer = make_key(database_url, "viewer")
    with pytest.raises(tracker_client.TrackerError) as info:
        tracker_client.init(experiment="auth", server=auth_server.address, api_key=viewer,
                            options=opt)
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_auto_mode_is_open_on_loopback_until_a_key_exists(settings: Settings,
                                                          database_url: str) -> None:
    srv = ServerThread(replace(settings, auth="auto"))
    try:
        assert not srv.running.auth_required
        api = Api(srv.address)
        api.new_run("open")
        api.close()
    finally:
        srv.stop()
    make_key(database_url, "admin")
    srv = ServerThread(replace(settings, auth="auto"))
    try:
        assert srv.running.auth_required
    finally:
        srv.stop()
