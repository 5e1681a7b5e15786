"""ArtifactService against a real server and PostgreSQL: idempotent records, filters and
pages, verification outcomes, bad input (INVALID_ARGUMENT / 400, nothing stored, a
credential never stored or logged), and the REST routes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace

import grpc
import httpx
import psycopg
import pytest
from structlog.testing import capture_logs

from tests.http_support import API, new_run, ok, problem
from tests.support import Api, ServerThread
from tracker_proto.v1 import artifacts_pb2 as ar
from tracker_proto.v1 import artifacts_pb2_grpc
from tracker_server.config import Settings

CKPT = ar.ARTIFACT_KIND_CHECKPOINT


@pytest.fixture
def stub(api: Api) -> artifacts_pb2_grpc.ArtifactServiceStub:
    return artifacts_pb2_grpc.ArtifactServiceStub(api.channel)


def _art(uri: str, step: int | None = None, kind: int = CKPT, **kw: object) -> ar.ArtifactInput:
    msg = ar.ArtifactInput(uri=uri, kind=kind, **kw)  # type: ignore[arg-type]
    if step is not None:
        msg.step = step
    return msg


def _list(stub: artifacts_pb2_grpc.ArtifactServiceStub, run: str, **kw: object
          ) -> list[ar.Artifact]:
    out: list[ar.Artifact] = []
    req = ar.ListArtifactsRequest(run_id=run, **kw)  # type: ignore[arg-type]
    while True:
        page = stub.ListArtifacts(req)
        out += page.artifacts
        if not page.next_page_token:
            return out
        req.page_token = page.next_page_token


def _rows(database_url: str, run: str) -> list[tuple[str, int | None]]:
    with psycopg.connect(database_url) as conn:
        return [(r[0], r[1]) for r in conn.execute(
            "SELECT uri, step FROM run_artifacts WHERE run_id = %s ORDER BY step_key, uri",
            (run,)).fetchall()]


def test_log_list_retry_records_once(api: Api, stub: artifacts_pb2_grpc.ArtifactServiceStub,
                                     database_url: str) -> None:
    run = api.new_run()
    req = ar.LogArtifactsRequest(run_id=run, artifacts=[
        _art("/shared/ckpt/epoch=0-step=10.ckpt", 10, size_bytes=123, sha256="AB" * 32,
             metadata={"monitor": "val_loss"}, rank=1),
        _art("/shared/ckpt/epoch=1-step=20.ckpt", 20, size_bytes=124),
        _art("s3://bucket/models/final", kind=ar.ARTIFACT_KIND_MODEL),
    ])
    assert stub.LogArtifacts(req).created == 3
    assert stub.LogArtifacts(req).created == 0  # a retried call records nothing twice
    got = _list(stub, run)
    assert [(a.uri, a.step if a.HasField("step") else None) for a in got] == [
        ("s3://bucket/models/final", None),
        ("/shared/ckpt/epoch=0-step=10.ckpt", 10),
        ("/shared/ckpt/epoch=1-step=20.ckpt", 20)]
    first = got[1]
    assert (first.size_bytes, first.sha256, dict(first.metadata), first.rank, first.run_id) == (
        123, "ab" * 32, {"monitor": "val_loss"}, 1, run)
    assert first.verify_state == ar.VERIFY_STATE_UNSPECIFIED and first.created_at.seconds > 0
    assert not got[0].HasField("size_bytes")
    assert len(_rows(database_url, run)) == 3


def test_filters_and_pages(api: Api, stub: artifacts_pb2_grpc.ArtifactServiceStub) -> None:
    run = api.new_run()
    stub.LogArtifacts(ar.LogArtifactsRequest(run_id=run, artifacts=[
        *(_art(f"/c/{s:03d}.ckpt", s) for s in range(0, 70, 10)),
        _art("/d/train", kind=ar.ARTIFACT_KIND_DATASET)]))
    assert [a.uri for a in _list(stub, run, page_size=3)] == [
        "/d/train", *(f"/c/{s:03d}.ckpt" for s in range(0, 70, 10))]
    assert [a.step for a in _list(stub, run, min_step=15, max_step=40)] == [20, 30, 40]
    assert [a.uri for a in _list(stub, run, kinds=[ar.ARTIFACT_KIND_DATASET])] == ["/d/train"]
    with pytest.raises(grpc.RpcError) as info:
        stub.ListArtifacts(ar.ListArtifactsRequest(run_id=run, page_token="garbage"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        stub.ListArtifacts(ar.ListArtifactsRequest(run_id=str(uuid.uuid4())))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


SECRET = "wJalrXUtnFEMI-K7MDENG"


@pytest.mark.parametrize("artifact", [
    _art(""),
    _art("/" + "x" * 2048),
    _art("relative/epoch=1.ckpt"),
    _art("/a", kind=ar.ARTIFACT_KIND_UNSPECIFIED),
    _art("/a", kind=17),
    _art("/a", size_bytes=-5),
    _art(f"s3://AKIDEXAMPLE:{SECRET}@bucket/ckpt"),
    _art(f"https://b.s3.amazonaws.com/ckpt?X-Amz-Credential=AKID&X-Amz-Signature={SECRET}"),
], ids=["empty", "too-long", "relative", "unspecified-kind", "unknown-kind", "negative-size",
        "userinfo", "presigned"])
def test_bad_input_is_invalid_argument_and_never_stored_or_logged(
        api: Api, stub: artifacts_pb2_grpc.ArtifactServiceStub, database_url: str,
        artifact: ar.ArtifactInput) -> None:
    run = api.new_run()
    with capture_logs() as logs:
        with pytest.raises(grpc.RpcError) as info:
            stub.LogArtifacts(ar.LogArtifactsRequest(run_id=run,
                                                     artifacts=[_art("/ok"), artifact]))
        # The call's log line is written just after the answer: wait for it.
        deadline = time.monotonic() + 5
        while not any(e.get("event") == "rpc" for e in logs) and time.monotonic() < deadline:
            time.sleep(0.01)
    assert [e["code"] for e in logs if e.get("event") == "rpc"] == ["INVALID_ARGUMENT"]
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "artifacts[1]" in (info.value.details() or "")
    assert SECRET not in (info.value.details() or "")
    assert SECRET not in repr(logs)
    assert _rows(database_url, run) == []  # all or nothing


def test_unknown_run_and_limits_from_settings(settings: Settings) -> None:
    srv = ServerThread(replace(settings, max_artifact_uri_bytes=20, max_artifacts_per_call=2))
    api = Api(srv.address)
    try:
        stub = artifacts_pb2_grpc.ArtifactServiceStub(api.channel)
        run = api.new_run()
        stub.LogArtifacts(ar.LogArtifactsRequest(run_id=run, artifacts=[_art("/" + "x" * 19)]))
        for arts in ([_art("/" + "x" * 20)], [_art("/a"), _art("/b"), _art("/c")]):
            with pytest.raises(grpc.RpcError) as info:
                stub.LogArtifacts(ar.LogArtifactsRequest(run_id=run, artifacts=arts))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as info:
            stub.LogArtifacts(ar.LogArtifactsRequest(run_id=str(uuid.uuid4()),
                                                     artifacts=[_art("/a")]))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        api.close()
        srv.stop()


def test_verification_outcomes(api: Api, stub: artifacts_pb2_grpc.ArtifactServiceStub) -> None:
    run = api.new_run()
    stub.LogArtifacts(ar.LogArtifactsRequest(run_id=run, artifacts=[
        _art("/c/1", 1, size_bytes=10), _art("/c/2", 2, size_bytes=10), _art("/m")]))
    stub.RecordVerification(ar.RecordVerificationRequest(run_id=run, results=[
        ar.Verification(uri="/c/1", step=1, state=ar.VERIFY_STATE_OK),
        ar.Verification(uri="/c/2", step=2, state=ar.VERIFY_STATE_SIZE_MISMATCH,
                        detail="size 4, recorded 10"),
        ar.Verification(uri="/m", state=ar.VERIFY_STATE_MISSING, detail="no such file")]))
    got = {a.uri: a for a in _list(stub, run)}
    assert got["/c/1"].verify_state == ar.VERIFY_STATE_OK and got["/c/1"].verified_at.seconds
    assert (got["/c/2"].verify_state, got["/c/2"].verify_detail) == (
        ar.VERIFY_STATE_SIZE_MISMATCH, "size 4, recorded 10")
    assert got["/m"].verify_state == ar.VERIFY_STATE_MISSING
    # An unknown (uri, step) refuses the whole call.
    with pytest.raises(grpc.RpcError) as info:
        stub.RecordVerification(ar.RecordVerificationRequest(run_id=run, results=[
            ar.Verification(uri="/c/1", step=1, state=ar.VERIFY_STATE_MISSING),
            ar.Verification(uri="/c/1", step=99, state=ar.VERIFY_STATE_OK)]))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert {a.uri: a for a in _list(stub, run)}["/c/1"].verify_state == ar.VERIFY_STATE_OK
    # The file was rewritten with another size: the old outcome no longer applies.
    stub.LogArtifacts(ar.LogArtifactsRequest(run_id=run, artifacts=[_art("/c/1", 1,
                                                                         size_bytes=11)]))
    assert {a.uri: a for a in _list(stub, run)}["/c/1"].verify_state \
        == ar.VERIFY_STATE_UNSPECIFIED


@pytest.fixture
def rest(hc: httpx.Client) -> Iterator[httpx.Client]:
    yield hc


def test_rest_routes(rest: httpx.Client, database_url: str) -> None:
    run = new_run(rest)["run_id"]
    url = f"{API}/runs/{run}/artifacts"
    body = {"artifacts": [
        {"uri": "/shared/c/10.ckpt", "step": 10, "size_bytes": 2**60, "metadata": {"a": "b"}},
        {"uri": "gs://bucket/final", "kind": "model"}]}
    assert ok(rest.post(url, json=body)) == {"created": 2}
    assert ok(rest.post(url, json=body)) == {"created": 0}
    listed = ok(rest.get(url))
    assert [(a["uri"], a["kind"], a["step"]) for a in listed["artifacts"]] == [
        ("gs://bucket/final", "model", None), ("/shared/c/10.ckpt", "checkpoint", 10)]
    big = listed["artifacts"][1]
    assert big["size_bytes"] == str(2**60)  # int64 beyond 2^53 travel as strings
    assert (big["verify_state"], big["metadata"]) == ("unverified", {"a": "b"})
    assert [a["uri"] for a in ok(rest.get(url, params={"kind": "model"}))["artifacts"]] == [
        "gs://bucket/final"]
    assert ok(rest.get(url, params={"min_step": 11}))["artifacts"] == []
    for bad in ({"uri": ""}, {"uri": "/a", "size_bytes": -1}, {"uri": "/a", "kind": "weights"},
                {"uri": f"s3://AKID:{SECRET}@b/c"}):
        err = problem(rest.post(url, json={"artifacts": [bad]}), 400)
        assert SECRET not in str(err)
    problem(rest.get(url, params={"kind": "weights"}), 400)
    problem(rest.get(url, params={"min_step": 5, "max_step": 1}), 400)
    problem(rest.get(url, params={"page_size": -1}), 400)
    problem(rest.get(url, params={"page_token": "garbage"}), 400)
    problem(rest.post(url, json={"artifacts": []}), 400)
    problem(rest.post(url, json={"artifacts": [{"uri": "/a", "step": "x"}]}), 400)
    problem(rest.get(f"{API}/runs/{uuid.uuid4()}/artifacts"), 404)
    assert len(_rows(database_url, run)) == 2
