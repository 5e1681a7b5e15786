"""Helpers for the query API tests: stubs and data seeding through the real stream."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import numpy as np
import pytest

from tests.support import Api, batch_req, columns, open_req, run_stream
from tracker_proto.v1 import experiments_pb2 as ex
from tracker_proto.v1 import query_pb2 as q
from tracker_proto.v1 import query_pb2_grpc


def query_stub(api: Api) -> query_pb2_grpc.MetricsQueryServiceStub:
    """MetricsQueryService stub on the test channel."""
    return query_pb2_grpc.MetricsQueryServiceStub(api.channel)


def new_experiment(api: Api, name: str | None = None, owner: str = "") -> str:
    """Create an experiment; returns its id."""
    resp = api.experiments.CreateExperiment(
        ex.CreateExperimentRequest(name=name or f"exp-{uuid.uuid4().hex[:8]}", owner=owner)
    )
    return str(resp.experiment.experiment_id)


def new_run(api: Api, exp_id: str, params: dict[str, str] | None = None,
            tags: dict[str, str] | None = None, name: str = "", run_key: str = "") -> str:
    """Create a run; returns its id."""
    resp = api.experiments.CreateRun(
        ex.CreateRunRequest(experiment_id=exp_id, params=params or {}, tags=tags or {},
                            name=name, run_key=run_key)
    )
    return str(resp.run.run_id)


def log_points(
    api: Api,
    run_id: str,
    key: str,
    steps: Any,
    values: Any,
    *,
    rank: int = 0,
    attempt: int = 0,
    writer: str | None = None,
) -> None:
    """Write one key's points through IngestService.Stream and wait for the ack."""
    steps = np.asarray(steps, dtype=np.int64)
    cols = columns([key], np.zeros(len(steps)), steps, values)
    resp = run_stream(
        api,
        [open_req(run_id, writer or f"w-{uuid.uuid4().hex[:6]}", rank, attempt),
         batch_req(1, cols)],
    )
    assert resp[-1].ack.committed_through_seq == 1, resp


def resume(api: Api, exp_id: str, run_key: str) -> int:
    """Start the next attempt of a keyed run; returns the attempt number."""
    resp = api.experiments.CreateRun(
        ex.CreateRunRequest(experiment_id=exp_id, run_key=run_key, resume=True)
    )
    return int(resp.run.attempt)


def rpc_error(fn: Any, request: Any) -> grpc.RpcError:
    """Call and return the RpcError it must raise."""
    with pytest.raises(grpc.RpcError) as info:
        fn(request)
    return info.value


def code_of(fn: Any, request: Any) -> grpc.StatusCode:
    """Status code of a failing call."""
    return rpc_error(fn, request).code()  # type: ignore[no-any-return]


def series(stub: query_pb2_grpc.MetricsQueryServiceStub, run_ids: list[str], keys: list[str],
           **kw: Any) -> list[q.MetricSeries]:
    """GetMetricSeries shortcut."""
    return list(stub.GetMetricSeries(q.GetMetricSeriesRequest(run_ids=run_ids, keys=keys, **kw))
                .series)
