"""Odd but well-formed input: out-of-range timestamps, non-finite metadata, NUL in every
text field. Each gets INVALID_ARGUMENT naming the field, never UNKNOWN or a misleading
message, and nothing is written."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2, timestamp_pb2

from tests.support import Api, batch_req, columns, open_req, run_stream
from tracker_proto.v1 import experiments_pb2 as ex
from tracker_proto.v1 import ingest_pb2, query_pb2, query_pb2_grpc

NUL = "a\x00b"


def _status(fn: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        fn()
    return info.value


def _ts(seconds: int, nanos: int = 0) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


@pytest.mark.parametrize(("ts", "label"), [
    (_ts(2**62), "seconds 2^62"), (_ts(-(2**62)), "seconds -2^62"),
    (_ts(0, -1), "negative nanos"), (_ts(0, 10**9), "nanos 1e9"),
    (_ts(253_402_300_800), "year 10000"),
])
def test_out_of_range_timestamps(api: Api, ts: timestamp_pb2.Timestamp, label: str) -> None:
    for fld in ("created_after", "created_before"):
        req = ex.ListExperimentsRequest()
        getattr(req, fld).CopyFrom(ts)
        err = _status(lambda req=req: api.experiments.ListExperiments(req, timeout=10))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, label
        assert fld in (err.details() or "") and "out of range" in (err.details() or "")
    run_id = api.new_run()
    err = _status(lambda: api.experiments.FinishRun(
        ex.FinishRunRequest(run_id=run_id, status=ex.RUN_STATUS_FINISHED, ended_at=ts),
        timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ended_at" in (err.details() or "")
    # Nothing changed: the run is still running.
    run = api.experiments.GetRun(ex.GetRunRequest(run_id=run_id), timeout=10).run
    assert run.status == ex.RUN_STATUS_RUNNING


def test_extreme_but_valid_timestamps_are_accepted(api: Api) -> None:
    req = ex.ListExperimentsRequest(created_after=_ts(-62_135_596_800),
                                    created_before=_ts(253_402_300_799, 999_999_999))
    api.experiments.ListExperiments(req, timeout=10)
    run_id = api.new_run()
    done = api.experiments.FinishRun(ex.FinishRunRequest(
        run_id=run_id, status=ex.RUN_STATUS_FINISHED, ended_at=_ts(253_402_300_799)),
        timeout=10).run
    assert done.ended_at.seconds == 253_402_300_799


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_metadata(api: Api, value: float) -> None:
    exp = api.experiments.CreateExperiment(
        ex.CreateExperimentRequest(name="meta", get_if_exists=True), timeout=10).experiment
    meta = struct_pb2.Struct()
    meta.update({"ok": 1.5, "nested": {"list": [1, {"bad": 0.0}]}})
    meta["nested"]["list"][1]["bad"] = value
    err = _status(lambda: api.experiments.CreateRun(ex.CreateRunRequest(
        experiment_id=exp.experiment_id, run_key="nan-meta", metadata=meta), timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "metadata.nested.list[1].bad" in (err.details() or "")
    # Not created: the same run key with clean metadata creates it now.
    clean = struct_pb2.Struct()
    clean.update({"ok": 1.5, "big": 1e308, "tiny": 5e-324, "neg_zero": -0.0})
    made = api.experiments.CreateRun(ex.CreateRunRequest(
        experiment_id=exp.experiment_id, run_key="nan-meta", metadata=clean), timeout=10)
    assert made.created
    assert made.run.metadata["tiny"] == 5e-324


def _nul_cases(api: Api) -> list[tuple[str, Callable[[], Any], str]]:
    exp = api.experiments.CreateExperiment(
        ex.CreateExperimentRequest(name="nul", get_if_exists=True), timeout=10).experiment
    eid = exp.experiment_id
    run_id = api.new_run()
    q = query_pb2_grpc.MetricsQueryServiceStub(api.channel)
    e = api.experiments
    meta = struct_pb2.Struct()
    meta.update({"host": NUL})
    key_meta = struct_pb2.Struct()
    key_meta.update({NUL: 1})
    return [
        ("experiment name", lambda: e.CreateExperiment(ex.CreateExperimentRequest(name=NUL)),
         "name"),
        ("experiment owner", lambda: e.CreateExperiment(
            ex.CreateExperimentRequest(name="x", owner=NUL)), "owner"),
        ("description", lambda: e.CreateExperiment(
            ex.CreateExperimentRequest(name="nul-desc", description=NUL)), "description"),
        ("update description", lambda: e.UpdateExperiment(
            ex.UpdateExperimentRequest(experiment_id=eid, description=NUL)), "description"),
        ("name prefix", lambda: e.ListExperiments(ex.ListExperimentsRequest(name_prefix=NUL)),
         "name_prefix"),
        ("list owner", lambda: e.ListExperiments(ex.ListExperimentsRequest(owner=NUL)),
         "owner"),
        ("run name", lambda: e.CreateRun(ex.CreateRunRequest(experiment_id=eid, name=NUL)),
         "name"),
        ("run key", lambda: e.CreateRun(ex.CreateRunRequest(experiment_id=eid, run_key=NUL)),
         "run_key"),
        ("slurm job id", lambda: e.CreateRun(
            ex.CreateRunRequest(experiment_id=eid, slurm_job_id=NUL)), "slurm_job_id"),
        ("resume token", lambda: e.CreateRun(
            ex.CreateRunRequest(experiment_id=eid, run_key="k", resume_token=NUL)),
         "resume_token"),
        ("metadata string", lambda: e.CreateRun(
            ex.CreateRunRequest(experiment_id=eid, metadata=meta)), "metadata.host"),
        ("metadata key", lambda: e.CreateRun(
            ex.CreateRunRequest(experiment_id=eid, metadata=key_meta)), "metadata key"),
        ("create params", lambda: e.CreateRun(
            ex.CreateRunRequest(experiment_id=eid, params={"lr": NUL})), "params"),
        ("param key", lambda: e.LogParams(ex.LogParamsRequest(run_id=run_id,
                                                              params={NUL: "1"})), "params"),
        ("param value", lambda: e.LogParams(ex.LogParamsRequest(run_id=run_id,
                                                                params={"x": NUL})), "params"),
        ("tag", lambda: e.SetTags(ex.SetTagsRequest(run_id=run_id, tags={"t": NUL})), "tags"),
        ("tag delete", lambda: e.SetTags(ex.SetTagsRequest(run_id=run_id, delete_keys=[NUL])),
         "delete_keys"),
        ("filter", lambda: e.SearchRuns(ex.SearchRunsRequest(
            experiment_ids=[eid], filter=f'name = "{NUL}"')), "filter: NUL character"),
        ("order_by", lambda: e.SearchRuns(ex.SearchRunsRequest(
            experiment_ids=[eid], order_by=[f"params.{NUL}"])), "order_by[0]"),
        ("best-runs filter", lambda: q.GetBestRuns(query_pb2.GetBestRunsRequest(
            experiment_ids=[eid], key="loss", goal=query_pb2.GOAL_MINIMIZE,
            filter=f'tags.x = "{NUL}"')), "filter"),
        ("best-runs key", lambda: q.GetBestRuns(query_pb2.GetBestRunsRequest(
            experiment_ids=[eid], key=NUL, goal=query_pb2.GOAL_MINIMIZE)), "key"),
        ("series key", lambda: q.GetMetricSeries(query_pb2.GetMetricSeriesRequest(
            run_ids=[run_id], keys=[NUL])), "keys"),
        ("latest key", lambda: q.GetLatestMetrics(query_pb2.GetLatestMetricsRequest(
            run_ids=[run_id], keys=[NUL])), "keys"),
        ("export key", lambda: next(iter(q.StreamMetricSeries(
            query_pb2.StreamMetricSeriesRequest(run_id=run_id, key=NUL)))), "key"),
        ("writer id", lambda: api.ingest.LogMetrics(ingest_pb2.LogMetricsRequest(
            writer=ingest_pb2.Open(run_id=run_id, writer_id=NUL),
            batch=ingest_pb2.Batch(seq=1, columns=columns(["x"], [0], [1], [1.0])))),
         "writer_id"),
    ]


def test_nul_in_every_text_field(api: Api) -> None:
    failures = []
    for label, call, fragment in _nul_cases(api):
        try:
            call()
        except grpc.RpcError as err:
            code, details = err.code(), err.details() or ""
            if code != grpc.StatusCode.INVALID_ARGUMENT or fragment not in details:
                failures.append(f"{label}: {code.name} {details!r}")
            if "page_token" in details:
                failures.append(f"{label}: blames the page token: {details!r}")
        else:
            failures.append(f"{label}: accepted")
    assert not failures, "\n".join(failures)


def test_nul_metric_key_and_writer_on_a_stream(api: Api) -> None:
    run_id = api.new_run()
    resp = run_stream(api, [open_req(run_id, "w"),
                            batch_req(1, columns([NUL], [0], [1], [1.0]))])
    (rej,) = [r.rejected for r in resp if r.WhichOneof("kind") == "rejected"]
    assert "metric name contains NUL" in " ".join(e.reason for e in rej.errors)
    with pytest.raises(grpc.RpcError) as info:
        run_stream(api, [open_req(run_id, NUL)])
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "writer_id" in (info.value.details() or "")


@pytest.mark.parametrize("key", ["loss ", "\xa0lr", "k" * 250, "é" * 125])
def test_every_writable_key_is_readable(api: Api, key: str) -> None:
    """Keys are stored as written: reads neither strip them nor cap them below the
    ingest limit (250 UTF-8 bytes)."""
    run_id = api.new_run()
    resp = run_stream(api, [open_req(run_id, "w"), batch_req(1, columns([key], [0], [3], [0.5]))])
    assert resp[-1].ack.committed_through_seq == 1
    q = query_pb2_grpc.MetricsQueryServiceStub(api.channel)
    got = list(q.StreamMetricSeries(query_pb2.StreamMetricSeriesRequest(run_id=run_id, key=key),
                                    timeout=10))
    assert [list(m.steps) for m in got] == [[3]]
    series = q.GetMetricSeries(query_pb2.GetMetricSeriesRequest(run_ids=[run_id], keys=[key]),
                               timeout=10).series
    assert [s.key for s in series] == [key]
