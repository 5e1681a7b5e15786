"""Every error status of the REST API as application/problem+json, and no 500 for any
bad input: garbage bodies, wrong types, huge numbers, NUL bytes and bad UUIDs sent to
every endpoint (driven by the OpenAPI schema)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from starlette.requests import Request

from tests.http_support import API, client, fields, log, new_experiment, new_run, ok, problem
from tests.support import Api, ServerThread
from tracker_proto.v1 import experiments_pb2
from tracker_server.config import Settings
from tracker_server.domain.errors import Code, TrackerError
from tracker_server.http.errors import HTTP_STATUS, tracker_error


def test_400_names_the_field_and_the_filter_position(hc: httpx.Client) -> None:
    eid = new_experiment(hc)["experiment_id"]
    bad = problem(hc.get(f"{API}/runs", params={"experiment_id": eid,
                                                "filter": "params.lr = "}), 400)
    assert bad["code"] == "INVALID_ARGUMENT"
    assert bad["errors"] == [{"field": "filter", "message": bad["errors"][0]["message"],
                              "position": 12}]
    order = problem(hc.get(f"{API}/runs", params={"experiment_id": eid,
                                                  "order_by": "nonsense desc"}), 400)
    assert fields(order) == ["order_by[0]"]
    missing = problem(hc.post(f"{API}/experiments", json={"owner": "x"}), 400)
    assert fields(missing) == ["name"] and "422" not in json.dumps(missing)
    extra = problem(hc.post(f"{API}/experiments", json={"name": "x", "nmae": "y"}), 400)
    assert fields(extra) == ["nmae"]
    wrong = problem(hc.post(f"{API}/runs", json={"experiment_id": eid, "params": {"lr": 1}}),
                    400)
    assert fields(wrong) == ["params.lr"]
    broken = problem(hc.post(f"{API}/experiments", content=b'{"name": ',
                             headers={"content-type": "application/json"}), 400)
    assert fields(broken) == ["body"] and isinstance(broken["errors"][0]["position"], int)
    rid = new_run(hc, eid)["run_id"]
    index = problem(hc.post(f"{API}/runs/{rid}/metrics", json={
        "keys": ["a"], "key_index": [0, 3], "steps": [1, 2], "values": [1.0, 2.0]}), 400)
    assert fields(index) == ["key_index[1]"]
    lengths = problem(hc.post(f"{API}/runs/{rid}/metrics", json={
        "keys": ["a"], "key_index": [0], "steps": [1, 2], "values": [1.0]}), 400)
    assert "column lengths differ" in lengths["detail"]
    half = problem(hc.post(f"{API}/runs/{rid}/metrics", json={"keys": ["a"], "steps": [1]}), 400)
    assert set(fields(half)) == {"key_index", "values"}
    both = problem(hc.post(f"{API}/runs/{rid}/metrics", json={
        "keys": ["a"], "points": [{"key": "a", "step": 1, "value": 1}]}), 400)
    assert fields(both) == ["points"]
    seq = problem(hc.post(f"{API}/runs/{rid}/metrics", json={
        "seq": 1, "points": [{"key": "a", "step": 1, "value": 1}]}), 400)
    assert fields(seq) == ["writer_id"]
    assert fields(problem(hc.get(f"{API}/runs/{rid}/metrics/a",
                                 params={"aggregate": "mean", "rank": 1}), 400)) == ["rank"]
    text = problem(hc.post(f"{API}/runs/{rid}/metrics", content=b"{}",
                           headers={"content-type": "text/plain"}), 415)
    assert text["code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_404_405_409_412(hc: httpx.Client) -> None:
    missing = problem(hc.get(f"{API}/runs/{uuid.uuid4()}"), 404)
    assert missing["code"] == "NOT_FOUND" and missing["instance"].startswith(f"{API}/runs/")
    problem(hc.get(f"{API}/experiments/{uuid.uuid4()}"), 404)
    problem(hc.get(f"{API}/runs/{uuid.uuid4()}/metrics/loss"), 404)
    assert problem(hc.get(f"{API}/nothing/here"), 404)["code"] == "NOT_FOUND"
    problem(hc.post(f"{API}/nothing", json={}), 404)
    not_allowed = problem(hc.put(f"{API}/experiments", json={}), 405)
    assert "GET" in hc.put(f"{API}/experiments", json={}).headers["allow"]
    assert not_allowed["code"] == "METHOD_NOT_ALLOWED"
    new_experiment(hc, "dup")
    dup = problem(hc.post(f"{API}/experiments", json={"name": "dup"}), 409)
    assert dup["code"] == "ALREADY_EXISTS"
    run = new_run(hc, params={"lr": "0.1"})
    rid = run["run_id"]
    assert problem(hc.post(f"{API}/runs/{rid}/params", json={"params": {"lr": "0.2"}}),
                   409)["code"] == "ALREADY_EXISTS"
    ok(hc.post(f"{API}/runs/{rid}/finish", json={"status": "finished"}))
    changed = problem(hc.post(f"{API}/runs/{rid}/finish", json={"status": "failed"}), 412)
    assert changed["code"] == "FAILED_PRECONDITION"
    assert fields(problem(hc.post(f"{API}/runs/{rid}/finish", json={"status": "running"}),
                          400)) == ["status"]


@pytest.mark.parametrize("code", list(Code))
def test_every_domain_code_has_its_status(code: Code) -> None:
    request = Request({"type": "http", "method": "GET", "path": "/api/v1/runs",
                       "headers": [], "query_string": b""})
    response = tracker_error(request, TrackerError(code, "m", retry_after_s=1.2,
                                                   field_violations=[("f", "bad")]))
    assert response.status_code == HTTP_STATUS[code]
    assert response.headers["retry-after"] == "2"
    body = json.loads(bytes(response.body))
    assert body["code"] == code.value and body["errors"] == [{"field": "f", "message": "bad"}]
    assert {409: "Conflict", 412: "Precondition Failed", 429: "Too Many Requests",
            503: "Service Unavailable"}.get(response.status_code, body["title"]) == body["title"]


@pytest.fixture
def small_body_server(settings: Settings) -> Iterator[ServerThread]:
    srv = ServerThread(replace(settings, http_max_body_bytes=2000))
    try:
        yield srv
    finally:
        srv.stop()


def test_413_before_parsing(small_body_server: ServerThread) -> None:
    with client(small_body_server) as c:
        rid = new_run(c)["run_id"]
        url = f"{API}/runs/{rid}/metrics"
        big = {"keys": ["a"], "key_index": [0] * 300, "steps": list(range(300)),
               "values": [1.0] * 300}
        declared = problem(c.post(url, json=big), 413)
        assert "2000 bytes" in declared["detail"] and declared["code"] == "PAYLOAD_TOO_LARGE"

        def chunks() -> Iterator[bytes]:  # no Content-Length: refused while reading
            yield b'{"keys": ["a"], "key_index": ['
            for _ in range(100):
                yield b"0," * 20
            yield b"0]}"

        problem(c.post(url, content=chunks(), headers={"content-type": "application/json"}),
                413)
        problem(c.post(f"{API}/experiments", content=chunks(),
                       headers={"content-type": "application/json"}), 413)
        assert log(c, rid, keys=["a"], key_index=[0], steps=[1], values=[1.0])[
            "points_written"] == 1


def test_429_with_retry_after_shared_with_grpc(settings: Settings) -> None:
    srv = ServerThread(replace(settings, rate_unary_per_s=0.5))  # one request per 2 s
    api = Api(srv.address)  # the same caller (peer host) over gRPC: the same bucket
    try:
        grpc.channel_ready_future(api.channel).result(timeout=10)
        with client(srv) as c:
            ok(c.get(f"{API}/experiments"))
            limited = c.get(f"{API}/experiments")
            body = problem(limited, 429)
            assert body["code"] == "RESOURCE_EXHAUSTED" and int(limited.headers["retry-after"]) >= 1
            with pytest.raises(grpc.RpcError) as info:
                api.experiments.ListExperiments(experiments_pb2.ListExperimentsRequest())
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            ok(c.get("/health"))  # probes are never limited
    finally:
        api.close()
        srv.stop()
    srv = ServerThread(replace(settings, rate_points_per_s=100))
    try:
        with client(srv) as c:
            rid = new_run(c)["run_id"]
            body = {"keys": ["a"], "key_index": [0] * 150, "steps": list(range(150)),
                    "values": [0.5] * 150}
            ok(c.post(f"{API}/runs/{rid}/metrics", json=body))  # a full bucket lets it pass
            second = c.post(f"{API}/runs/{rid}/metrics", json=body)
            assert problem(second, 429)["detail"].startswith("ingest rate limit")
            assert int(second.headers["retry-after"]) >= 1
    finally:
        srv.stop()


def test_503_when_the_database_is_gone(settings: Settings, hc: httpx.Client,
                                       pg_admin_url: str) -> None:
    eid = new_experiment(hc)["experiment_id"]
    assert settings.database_url
    dbname = psycopg.conninfo.conninfo_to_dict(settings.database_url)["dbname"]
    with psycopg.connect(settings.database_url) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = "
                     "(SELECT max(version) FROM schema_migrations)")
    pending = hc.get("/health/ready")
    assert pending.status_code == 503 and "migrations pending" in pending.json()["detail"]
    assert pending.headers["retry-after"]
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {dbname} ALLOW_CONNECTIONS false")
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))
    try:
        down = hc.get("/health/ready")
        assert down.status_code == 503 and down.json()["status"] == "not ready"
        started = time.monotonic()
        gone = hc.get(f"{API}/experiments/{eid}")
        # Pooled connections are checked before use: a dead one is not handed out, and
        # no new one can be made, so the call fails after the pool timeout, not later.
        assert time.monotonic() - started < settings.db_pool_timeout_ms / 1000 + 2
        body = problem(gone, 503)
        assert body["code"] == "UNAVAILABLE" and int(gone.headers["retry-after"]) >= 1
        assert ok(hc.get("/health")) == {"status": "ok"}  # liveness is not readiness
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(f"ALTER DATABASE {dbname} ALLOW_CONNECTIONS true")


# Garbage everywhere -------------------------------------------------------------------
_GARBAGE_VALUES: list[Any] = [None, True, -1, 0, 1.5, 2**64, -(2**70), "", "x", "\u0000",
                              "a\u0000b", "9" * 400, [], [None], {}, {"\u0000": 1},
                              {"a": [[[]]]}, "NaN", "-Infinity", "😀" * 300]
_GARBAGE_BODIES: list[bytes] = [b"", b"{", b"[]", b"null", b"1e999", b'"x"', b"\x00\xff\xfe",
                                b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000 + b"1" + b"}" * 3000,
                                b'{"name": "\\u0000"}', b'{"api_key": "trk_\\ud800"}',
                                json.dumps({"keys": ["a"] * 3, "key_index": [0],
                                            "steps": [1], "values": [1]}).encode()]
_BAD_IDS = ["x", "%00", "00000000-0000-0000-0000-00000000000g", "1" * 5000, "%E2%82",
            str(uuid.uuid4()).upper(), "..%2F..%2Fetc%2Fpasswd"]
_GARBAGE_QUERY = ["", "\u0000", "-1", "99999999999999999999999", "1.5", "NaN", "x" * 3000,
                  "' OR 1=1 --", "[]"]


def _body_fields(schema: dict[str, Any], op: dict[str, Any]) -> list[str]:
    ref = (op.get("requestBody", {}).get("content", {}).get("application/json", {})
           .get("schema", {}).get("$ref"))
    if not ref:
        return []
    model = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return list(model.get("properties", {}))


def _cases(schema: dict[str, Any], eid: str, rid: str) -> Iterator[tuple[str, str, Any]]:
    for path, item in schema["paths"].items():
        for verb, op in item.items():
            real = path.replace("{experiment_id}", eid).replace("{run_id}", rid).replace(
                "{key}", "a/b").replace("{key:path}", "a/b")
            for bad in _BAD_IDS:
                if "{" in path:
                    yield verb, path.replace("{experiment_id}", bad).replace(
                        "{run_id}", bad).replace("{key}", bad).replace("{key:path}", bad), {}
            for name in (p["name"] for p in op.get("parameters", []) if p["in"] == "query"):
                for value in _GARBAGE_QUERY:
                    yield verb, real, {"params": {name: value}}
            if verb in ("post", "patch", "put", "delete"):
                for body in _GARBAGE_BODIES:
                    yield verb, real, {"content": body,
                                       "headers": {"content-type": "application/json"}}
                for name in _body_fields(schema, op):
                    for value in _GARBAGE_VALUES:
                        yield verb, real, {"json": {name: value}}


def test_no_500_for_any_garbage(hc: httpx.Client) -> None:
    run = new_run(hc)
    log(hc, run["run_id"], keys=["a/b"], key_index=[0], steps=[1], values=[1.0])
    schema = ok(hc.get("/api/openapi.json"))
    seen, failures = 0, []
    for verb, url, kwargs in _cases(schema, run["experiment_id"], run["run_id"]):
        response = hc.request(verb.upper(), url, **kwargs)
        seen += 1
        if response.status_code >= 500:
            failures.append((verb, url, kwargs, response.text[:300]))
        elif response.status_code >= 400:
            problem(response, response.status_code)
    assert not failures, "\n".join(map(repr, failures[:20]))
    assert seen > 1000
