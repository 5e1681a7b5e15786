"""A server without an RPC the client needs answers UNIMPLEMENTED: that op fails for good
(reported, not retried), and everything else keeps working."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

import tracker_client
from tests.client_support import fast
from tracker_proto.v1 import experiments_pb2 as ex

SERVICE = "tracker.v1.ExperimentService"


class _Calls(grpc.ServerInterceptor):
    """Counts every call by method name, served or not."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Any],
                          handler_call_details: grpc.HandlerCallDetails) -> Any:
        with self._lock:
            self.seen[handler_call_details.method.rsplit("/", 1)[-1]] += 1
        return continuation(handler_call_details)


def _create_experiment(req: ex.CreateExperimentRequest, _: grpc.ServicerContext
                       ) -> ex.CreateExperimentResponse:
    return ex.CreateExperimentResponse(
        experiment=ex.Experiment(experiment_id="e-1", name=req.name))


def _create_run(req: ex.CreateRunRequest, _: grpc.ServicerContext) -> ex.CreateRunResponse:
    return ex.CreateRunResponse(run=ex.Run(run_id="r-1", experiment_id=req.experiment_id,
                                           attempt=1, name="old"), created=True)


@pytest.fixture
def old_server() -> Iterator[tuple[str, _Calls]]:
    """Only CreateExperiment and CreateRun: LogParams, SetTags and FinishRun are
    unknown to it, as to a server built before they existed."""
    calls = _Calls()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[calls])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {
        "CreateExperiment": grpc.unary_unary_rpc_method_handler(
            _create_experiment, ex.CreateExperimentRequest.FromString,
            ex.CreateExperimentResponse.SerializeToString),
        "CreateRun": grpc.unary_unary_rpc_method_handler(
            _create_run, ex.CreateRunRequest.FromString, ex.CreateRunResponse.SerializeToString),
    })])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", calls
    finally:
        server.stop(None)


def test_unimplemented_ops_fail_once_and_are_reported(old_server: tuple[str, _Calls],
                                                      tmp_path: Path) -> None:
    address, calls = old_server
    run = tracker_client.init(experiment="old", server=address, options=fast(tmp_path))
    assert run.run_id == "r-1"
    report = run.log_params({"lr": 0.1}, timeout=10)
    assert report.ops_pending == 0
    assert len(report.ops_failed) == 1
    assert report.ops_failed[0].startswith("params not applied: UNIMPLEMENTED")
    report = run.set_tags({"team": "a"}, timeout=10)
    assert [m.split(":")[0] for m in report.ops_failed] == ["params not applied",
                                                           "tags not applied"]
    stats = run.stats
    assert stats.ops_failed == 2 and "tags not applied: UNIMPLEMENTED" in stats.last_error
    report = run.finish(timeout=10)
    assert report.ops_pending == 0 and len(report.ops_failed) == 3
    assert report.ops_failed[2].startswith("finish not applied: UNIMPLEMENTED")
    # Each op was tried once: UNIMPLEMENTED is not a reason to retry.
    assert (calls.seen["LogParams"], calls.seen["SetTags"], calls.seen["FinishRun"]) == (1, 1, 1)
    # Nothing is left waiting in the spool: the ops were answered, if refused.
    assert report.durable and not run.spool_path.exists()
