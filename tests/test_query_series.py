"""GetMetricSeries / StreamMetricSeries / ListMetricKeys against a real server."""

from __future__ import annotations

import math
import uuid

import grpc
import numpy as np

from tests.query_support import (
    code_of,
    log_points,
    new_experiment,
    new_run,
    query_stub,
    resume,
    series,
)
from tests.support import Api
from tracker_proto.v1 import query_pb2 as q


def test_full_series_roundtrip_exact_values(api: Api) -> None:
    stub = query_stub(api)
    run = new_run(api, new_experiment(api))
    values = [0.5, math.nan, math.inf, -math.inf, -0.0, 1e-300]
    log_points(api, run, "loss", range(6), values)
    [s] = series(stub, [run], ["loss"])
    assert list(s.steps) == list(range(6))
    got = np.array(s.values)
    assert np.array_equal(got, np.array(values), equal_nan=True)
    assert math.copysign(1, s.values[4]) == -1
    assert s.total_points == 6 and not s.downsampled and s.rank == 0
    assert list(s.wall_time_ns) == [i * 1000 for i in range(6)]


def test_downsampling_keeps_first_last_min_max(api: Api) -> None:
    stub = query_stub(api)
    run = new_run(api, new_experiment(api))
    n = 20_000
    rng = np.random.default_rng(1)
    values = rng.normal(size=n)
    values[7777] = -50.0
    values[12345] = 50.0
    log_points(api, run, "x", np.arange(n), values)
    for method in (q.DOWNSAMPLING_MINMAX, q.DOWNSAMPLING_LTTB):
        [s] = series(stub, [run], ["x"], max_points=200, downsampling=method)
        steps = list(s.steps)
        assert len(steps) <= 200 and s.downsampled and s.total_points == n
        assert steps[0] == 0 and steps[-1] == n - 1
        assert 7777 in steps and 12345 in steps
        assert steps == sorted(set(steps))
        # Deterministic: same request, same answer.
        [again] = series(stub, [run], ["x"], max_points=200, downsampling=method)
        assert list(again.steps) == steps and list(again.values) == list(s.values)
    # Zoom: re-sampled within the range.
    [z] = series(stub, [run], ["x"], max_points=100, start_step=1000, end_step=1999)
    assert z.steps[0] == 1000 and z.steps[-1] == 1999 and z.total_points == 1000
    assert len(z.steps) <= 100


def test_later_attempt_supersedes_and_later_write_wins(api: Api) -> None:
    stub = query_stub(api)
    exp = new_experiment(api)
    run = new_run(api, exp, run_key="job-1")
    log_points(api, run, "loss", range(10), [1.0] * 10)
    # Same attempt, step 3 written again later: the later write wins.
    log_points(api, run, "loss", [3], [3.5])
    assert resume(api, exp, "job-1") == 1
    # Attempt 1 restarts from step 6 (checkpoint): steps >= 6 of attempt 0 are hidden,
    # even those attempt 1 never re-logged (8, 9).
    log_points(api, run, "loss", [6, 7], [2.0, 2.0], attempt=1)
    [s] = series(stub, [run], ["loss"], downsampling=q.DOWNSAMPLING_NONE)
    assert list(s.steps) == [0, 1, 2, 3, 4, 5, 6, 7]
    assert list(s.values) == [1.0, 1.0, 1.0, 3.5, 1.0, 1.0, 2.0, 2.0]
    # The rule holds inside a zoomed range that excludes attempt 1's first step.
    [z] = series(stub, [run], ["loss"], start_step=7, end_step=9)
    assert list(z.steps) == [7] and list(z.values) == [2.0]


def test_ranks_per_rank_and_aggregated(api: Api) -> None:
    stub = query_stub(api)
    run = new_run(api, new_experiment(api))
    log_points(api, run, "loss", [0, 1, 2], [1.0, 2.0, 3.0], rank=0)
    log_points(api, run, "loss", [1, 2, 3], [4.0, math.nan, 6.0], rank=1)
    per_rank = series(stub, [run], ["loss"])
    assert [s.rank for s in per_rank] == [0, 1]
    [only1] = series(stub, [run], ["loss"], rank=1)
    assert only1.rank == 1 and list(only1.steps) == [1, 2, 3]
    [mean] = series(stub, [run], ["loss"], aggregation=q.RANK_AGGREGATION_MEAN)
    assert mean.rank == -1 and list(mean.steps) == [0, 1, 2, 3]
    assert mean.values[0] == 1.0 and mean.values[1] == 3.0 and math.isnan(mean.values[2])
    [mx] = series(stub, [run], ["loss"], aggregation=q.RANK_AGGREGATION_MAX)
    assert list(mx.values) == [1.0, 4.0, 3.0, 6.0]
    [mn] = series(stub, [run], ["loss"], aggregation=q.RANK_AGGREGATION_MIN)
    assert list(mn.values) == [1.0, 2.0, 3.0, 6.0]


def test_series_new_points_visible_after_cached_read(api: Api) -> None:
    stub = query_stub(api)
    run = new_run(api, new_experiment(api))
    log_points(api, run, "a", range(5), [1.0] * 5)
    assert len(series(stub, [run], ["a"])[0].steps) == 5
    log_points(api, run, "a", range(5, 8), [2.0] * 3)
    assert len(series(stub, [run], ["a"])[0].steps) == 8


def test_series_errors_and_empty(api: Api) -> None:
    stub = query_stub(api)
    run = new_run(api, new_experiment(api))
    log_points(api, run, "a", range(50), np.arange(50.0))
    get = stub.GetMetricSeries
    assert series(stub, [run], ["never-logged"]) == []
    assert code_of(get, q.GetMetricSeriesRequest(run_ids=[str(uuid.uuid4())], keys=["a"])) \
        == grpc.StatusCode.NOT_FOUND
    bad = [
        q.GetMetricSeriesRequest(run_ids=[], keys=["a"]),
        q.GetMetricSeriesRequest(run_ids=["nope"], keys=["a"]),
        q.GetMetricSeriesRequest(run_ids=[run], keys=[]),
        q.GetMetricSeriesRequest(run_ids=[run], keys=["a"], max_points=2),
        q.GetMetricSeriesRequest(run_ids=[run], keys=["a"], max_points=1_000_000),
        q.GetMetricSeriesRequest(run_ids=[run], keys=["a"], start_step=5, end_step=4),
        q.GetMetricSeriesRequest(run_ids=[run], keys=["a"], rank=0,
                                 aggregation=q.RANK_AGGREGATION_MEAN),
        q.GetMetricSeriesRequest(run_ids=[run], keys=["a"], max_points=10,
                                 downsampling=q.DOWNSAMPLING_NONE),
    ]
    for req in bad:
        assert code_of(get, req) == grpc.StatusCode.INVALID_ARGUMENT, req


def test_stream_export_full_resolution(api: Api) -> None:
    stub = query_stub(api)
    run = new_run(api, new_experiment(api))
    n = 25_000
    log_points(api, run, "x", np.arange(n), np.arange(n) * 0.5, rank=0)
    log_points(api, run, "x", np.arange(10), np.arange(10.0), rank=3)
    msgs = list(stub.StreamMetricSeries(
        q.StreamMetricSeriesRequest(run_id=run, key="x", points_per_message=4000)))
    assert all(len(m.steps) <= 4000 for m in msgs)
    ranks = [m.rank for m in msgs]
    assert ranks == sorted(ranks) and set(ranks) == {0, 3}
    steps0 = np.concatenate([np.array(m.steps) for m in msgs if m.rank == 0])
    assert np.array_equal(steps0, np.arange(n))
    ranged = list(stub.StreamMetricSeries(q.StreamMetricSeriesRequest(
        run_id=run, key="x", rank=0, start_step=100, end_step=199)))
    assert sum(len(m.steps) for m in ranged) == 100
    assert list(stub.StreamMetricSeries(
        q.StreamMetricSeriesRequest(run_id=run, key="nothing"))) == []
    err = code_of(lambda r: list(stub.StreamMetricSeries(r)),
                  q.StreamMetricSeriesRequest(run_id=str(uuid.uuid4()), key="x"))
    assert err == grpc.StatusCode.NOT_FOUND
    err = code_of(lambda r: list(stub.StreamMetricSeries(r)),
                  q.StreamMetricSeriesRequest(run_id=run, key=""))
    assert err == grpc.StatusCode.INVALID_ARGUMENT


def test_list_metric_keys(api: Api) -> None:
    stub = query_stub(api)
    run = new_run(api, new_experiment(api))
    log_points(api, run, "b", [0, 1, 2], [3.0, 1.0, 2.0], rank=0)
    log_points(api, run, "b", [0], [9.0], rank=2)
    log_points(api, run, "a", [5], [math.nan])
    keys = stub.ListMetricKeys(q.ListMetricKeysRequest(run_id=run)).keys
    assert [k.summary.key for k in keys] == ["a", "b"]
    a, b = keys
    assert not a.summary.HasField("min_value") and math.isnan(a.summary.last_value)
    assert list(b.ranks) == [0, 2] and b.summary.min_value == 1.0 and b.summary.max_value == 9.0
    empty = new_run(api, new_experiment(api))
    assert list(stub.ListMetricKeys(q.ListMetricKeysRequest(run_id=empty)).keys) == []
    assert code_of(stub.ListMetricKeys, q.ListMetricKeysRequest(run_id=str(uuid.uuid4()))) \
        == grpc.StatusCode.NOT_FOUND
    assert code_of(stub.ListMetricKeys, q.ListMetricKeysRequest(run_id="x")) \
        == grpc.StatusCode.INVALID_ARGUMENT


def test_zoomed_export_hides_steps_of_an_attempt_outside_the_range(api: Api) -> None:
    # Attempt 1 resumed at step 50 and stopped at 59: steps >= 50 of attempt 0 are hidden
    # even in a range (70..90) that holds no chunk of attempt 1.
    stub = query_stub(api)
    exp = new_experiment(api)
    run = new_run(api, exp, run_key="zoom-resume")
    log_points(api, run, "loss", range(100), [1.0] * 100)
    assert resume(api, exp, "zoom-resume") == 1
    log_points(api, run, "loss", range(50, 60), [2.0] * 10, attempt=1)
    msgs = list(stub.StreamMetricSeries(
        q.StreamMetricSeriesRequest(run_id=run, key="loss", start_step=70, end_step=90)))
    assert sum(len(m.steps) for m in msgs) == 0
    msgs = list(stub.StreamMetricSeries(
        q.StreamMetricSeriesRequest(run_id=run, key="loss", start_step=40, end_step=90)))
    assert [s for m in msgs for s in m.steps] == list(range(40, 60))
