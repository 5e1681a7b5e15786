"""GetLatestMetrics, GetBestRuns, CompareRuns against a real server; downsampling units."""

from __future__ import annotations

import math
import uuid

import grpc
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.query_support import code_of, log_points, new_experiment, new_run, query_stub
from tests.support import Api
from tracker_proto.v1 import query_pb2 as q
from tracker_server.domain.downsample import extremes, lttb, minmax
from tracker_server.domain.series import Chunks, resolve

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


def test_latest_metrics(api: Api) -> None:
    stub = query_stub(api)
    exp = new_experiment(api)
    a, b = new_run(api, exp), new_run(api, exp)
    log_points(api, a, "loss", [0, 1, 2], [3.0, 1.0, 2.0])
    log_points(api, a, "acc", [0], [0.5])
    resp = stub.GetLatestMetrics(q.GetLatestMetricsRequest(run_ids=[b, a]))
    assert [r.run_id for r in resp.runs] == [b, a]
    assert list(resp.runs[0].metrics) == []
    by_key = {m.key: m for m in resp.runs[1].metrics}
    assert by_key["loss"].last_value == 2.0 and by_key["loss"].last_step == 2
    assert by_key["loss"].min_value == 1.0 and by_key["loss"].min_step == 1
    only = stub.GetLatestMetrics(q.GetLatestMetricsRequest(run_ids=[a], keys=["acc"]))
    assert [m.key for m in only.runs[0].metrics] == ["acc"]
    assert code_of(stub.GetLatestMetrics, q.GetLatestMetricsRequest(
        run_ids=[str(uuid.uuid4())])) == NOT_FOUND
    assert code_of(stub.GetLatestMetrics, q.GetLatestMetricsRequest()) == INVALID


def test_best_runs(api: Api) -> None:
    stub = query_stub(api)
    exp, other = new_experiment(api), new_experiment(api)
    runs = {}
    finals = [0.7, 0.9, math.nan, 0.8]
    for i, final in enumerate(finals):
        runs[i] = new_run(api, exp, name=f"r{i}", params={"lr": str(10 ** -i)})
        log_points(api, runs[i], "val_acc", [0, 1, 2], [0.1, 0.95 - i * 0.1, final])
    new_run(api, exp, name="no-metrics")
    o = new_run(api, other, name="o")
    log_points(api, o, "val_acc", [0], [0.99])

    def best(**kw: object) -> list[str]:
        req = q.GetBestRunsRequest(experiment_ids=[exp], key="val_acc", **kw)  # type: ignore[arg-type]
        return [r.run_name for r in stub.GetBestRuns(req).runs]

    assert best(goal=q.GOAL_MAXIMIZE) == ["r1", "r3", "r0"]  # NaN left out
    assert best(goal=q.GOAL_MINIMIZE, limit=1) == ["r0"]
    assert best(goal=q.GOAL_MAXIMIZE, on=q.SUMMARY_FIELD_MAX) == ["r0", "r1", "r3", "r2"]
    assert best(goal=q.GOAL_MAXIMIZE, filter="params.lr < 0.05") == ["r3"]
    top = stub.GetBestRuns(q.GetBestRunsRequest(
        experiment_ids=[exp, other], key="val_acc", goal=q.GOAL_MAXIMIZE, limit=1)).runs[0]
    assert top.run_name == "o" and top.value == 0.99 and top.step == 0
    assert top.summary.count == 1 and top.experiment_id == other
    assert [r.run_name for r in stub.GetBestRuns(q.GetBestRunsRequest(
        experiment_ids=[exp], key="unknown", goal=q.GOAL_MAXIMIZE)).runs] == []
    bad = [
        q.GetBestRunsRequest(experiment_ids=[exp], key="val_acc"),
        q.GetBestRunsRequest(experiment_ids=[exp], key="", goal=q.GOAL_MAXIMIZE),
        q.GetBestRunsRequest(experiment_ids=[], key="val_acc", goal=q.GOAL_MAXIMIZE),
        q.GetBestRunsRequest(experiment_ids=[exp], key="v", goal=q.GOAL_MAXIMIZE, limit=-1),
        q.GetBestRunsRequest(experiment_ids=[exp], key="v", goal=q.GOAL_MAXIMIZE, filter="x"),
    ]
    for req in bad:
        assert code_of(stub.GetBestRuns, req) == INVALID, req
    assert code_of(stub.GetBestRuns, q.GetBestRunsRequest(
        experiment_ids=[str(uuid.uuid4())], key="v", goal=q.GOAL_MAXIMIZE)) == NOT_FOUND


def test_compare_runs(api: Api) -> None:
    stub = query_stub(api)
    exp = new_experiment(api)
    a = new_run(api, exp, name="a", params={"lr": "0.1", "bs": "32"})
    b = new_run(api, exp, name="b", params={"lr": "0.2", "bs": "32", "extra": "1"})
    log_points(api, a, "loss", [0], [1.0])
    log_points(api, b, "loss", [0], [1.0])
    log_points(api, a, "acc", [0], [math.nan])
    resp = stub.CompareRuns(q.CompareRunsRequest(run_ids=[a, b]))
    assert [r.name for r in resp.runs] == ["a", "b"]
    params = {p.key: p for p in resp.params}
    assert not params["bs"].differs and params["lr"].differs and params["extra"].differs
    assert [c.present for c in params["extra"].cells] == [False, True]
    metrics = {m.key: m for m in resp.metrics}
    assert not metrics["loss"].differs and metrics["acc"].differs
    assert [c.present for c in metrics["acc"].cells] == [True, False]
    assert code_of(stub.CompareRuns, q.CompareRunsRequest(run_ids=[a, str(uuid.uuid4())])) \
        == NOT_FOUND
    assert code_of(stub.CompareRuns, q.CompareRunsRequest()) == INVALID


# --- pure domain units ------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(allow_infinity=True, allow_nan=True, width=64), min_size=1, max_size=400),
    st.integers(min_value=4, max_value=60),
    st.sampled_from(["minmax", "lttb"]),
)
def test_downsampling_properties(values: list[float], max_points: int, method: str) -> None:
    v = np.array(values, dtype=np.float64)
    steps = np.arange(v.shape[0], dtype=np.int64) * 3
    fn = minmax if method == "minmax" else lttb
    idx = fn(steps, v, max_points)
    assert idx.shape[0] <= max(max_points, v.shape[0] if v.shape[0] <= max_points else 0)
    assert np.all(np.diff(idx) > 0)
    lo, hi = extremes(v)
    for must in (0, v.shape[0] - 1, lo, hi):
        assert must in idx
    assert np.array_equal(idx, fn(steps, v, max_points))


def test_resolve_unsorted_duplicates_and_attempts() -> None:
    # Two chunks of attempt 0 (second rewrites step 1), one of attempt 1 from step 2.
    chunks = Chunks(
        ranks=np.array([0, 0, 0]), attempts=np.array([0, 0, 1]),
        chunk_ids=np.array([1, 2, 3]), sizes=np.array([4, 1, 1]),
        steps=np.array([3, 1, 0, 2, 1, 2]), values=np.array([3.0, 1.0, 0.0, 2.0, 1.5, 9.0]),
        wall_ns=np.arange(6),
    )
    [s] = resolve(chunks, {(0, 0): 0, (0, 1): 2})
    assert s.steps.tolist() == [0, 1, 2] and s.values.tolist() == [0.0, 1.5, 9.0]
