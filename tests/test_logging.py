"""One canonical structlog line per RPC, with ids bound, and no secrets."""

from __future__ import annotations

import time
from dataclasses import replace

import grpc
import pytest
from structlog.testing import capture_logs

from tests.support import Api, ServerThread, batch_req, columns, open_req
from tests.test_auth import make_key, md
from tracker_proto.v1 import experiments_pb2
from tracker_server.config import Settings
from tracker_server.logs import redact_secrets


def _rpc_lines(logs: list[dict[str, object]], method_suffix: str) -> list[dict[str, object]]:
    return [e for e in logs if e.get("event") == "rpc"
            and str(e.get("method", "")).endswith(method_suffix)]


def _settle(logs: list[dict[str, object]], count: int) -> None:
    """The line is written as the call ends on the server, just after the client has its
    answer: wait (inside capture_logs) until ``count`` rpc lines arrived."""
    deadline = time.monotonic() + 5
    while sum(e.get("event") == "rpc" for e in logs) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def test_canonical_line_per_unary_and_stream(server: ServerThread, api: Api) -> None:
    with capture_logs() as logs:
        run_id = api.new_run("log")
        api.experiments.ListExperiments(experiments_pb2.ListExperimentsRequest(), timeout=5,
                                        metadata=(("x-request-id", "req-42"),))
        cols = columns(["a", "b"], [0, 1, 0, 1], [1, 1, 2, 2], [1.0, 2.0, 3.0, 4.0])
        list(api.ingest.Stream(iter([open_req(run_id, "w"), batch_req(1, cols),
                                     batch_req(2, cols)]), timeout=20))
        _settle(logs, 4)
    (listed,) = _rpc_lines(logs, "/ListExperiments")
    assert listed["code"] == "OK" and listed["request_id"] == "req-42"
    assert isinstance(listed["duration_ms"], float) and "127.0.0.1" in str(listed["peer"])
    assert "request_bytes" in listed
    (stream,) = _rpc_lines(logs, "/Stream")
    assert stream["code"] == "OK" and stream["batches"] == 2 and stream["points"] == 8
    assert len(str(stream["request_id"])) == 16  # generated when the caller sent none
    with capture_logs() as logs:
        with pytest.raises(grpc.RpcError):
            api.experiments.GetRun(experiments_pb2.GetRunRequest(run_id="nope"), timeout=5)
        _settle(logs, 1)
    (failed,) = _rpc_lines(logs, "/GetRun")
    assert failed["code"] in ("INVALID_ARGUMENT", "NOT_FOUND")


def test_key_id_logged_and_secret_never(settings: Settings, database_url: str) -> None:
    token = make_key(database_url, "viewer")
    srv = ServerThread(replace(settings, auth="required"))
    api = Api(srv.address)
    try:
        with capture_logs() as logs:
            api.experiments.ListExperiments(experiments_pb2.ListExperimentsRequest(),
                                            timeout=5, metadata=md(token))
            with pytest.raises(grpc.RpcError):
                api.experiments.CreateExperiment(
                    experiments_pb2.CreateExperimentRequest(name="x"), metadata=md(token))
            _settle(logs, 2)
    finally:
        api.close()
        srv.stop()
    (ok,) = _rpc_lines(logs, "/ListExperiments")
    assert ok["key_id"] == token.split("_")[1] and ok["role"] == "viewer"
    (denied,) = _rpc_lines(logs, "/CreateExperiment")
    assert denied["code"] == "PERMISSION_DENIED"
    secret = token.split("_", 2)[2]
    assert secret not in repr(logs)


def test_redaction_processor() -> None:
    token = "trk_0123456789ab_" + "s" * 43
    event = {"event": f"bad key {token}", "authorization": f"Bearer {token}",
             "error": "connection 'postgresql://u:hunter2@db/x' failed; password=hunter2",
             "detail": "header Bearer abc.def"}
    out = redact_secrets(None, "info", event)
    assert out["authorization"] == "***"
    assert out["event"] == "bad key trk_0123456789ab_***"
    assert "hunter2" not in str(out["error"]) and "abc.def" not in str(out["detail"])
