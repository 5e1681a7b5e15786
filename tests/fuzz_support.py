"""Protocol fuzzing: a corpus of valid requests per RPC, mutations of them, and raw
calls that send bytes as they are (no serializer), for ``tests/test_fuzz*.py``."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import struct_pb2, timestamp_pb2
from grpc_health.v1 import health_pb2

from tests.support import batch_req, columns, open_req
from tracker_proto.v1 import experiments_pb2 as ex
from tracker_proto.v1 import ingest_pb2
from tracker_proto.v1 import query_pb2 as q

PROPER_CODES = frozenset({
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE,
})
"""What bad input may end with; never INTERNAL, UNKNOWN, UNAVAILABLE or a hang."""

UNARY = {
    "/tracker.v1.ExperimentService/CreateExperiment",
    "/tracker.v1.ExperimentService/CreateRun",
    "/tracker.v1.ExperimentService/GetRun",
    "/tracker.v1.ExperimentService/GetExperiment",
    "/tracker.v1.ExperimentService/ListExperiments",
    "/tracker.v1.ExperimentService/UpdateExperiment",
    "/tracker.v1.ExperimentService/SearchRuns",
    "/tracker.v1.ExperimentService/FinishRun",
    "/tracker.v1.ExperimentService/LogParams",
    "/tracker.v1.ExperimentService/SetTags",
    "/tracker.v1.IngestService/LogMetrics",
    "/tracker.v1.MetricsQueryService/ListMetricKeys",
    "/tracker.v1.MetricsQueryService/GetMetricSeries",
    "/tracker.v1.MetricsQueryService/GetLatestMetrics",
    "/tracker.v1.MetricsQueryService/GetBestRuns",
    "/tracker.v1.MetricsQueryService/CompareRuns",
    "/grpc.health.v1.Health/Check",
}
SERVER_STREAM = {"/tracker.v1.MetricsQueryService/StreamMetricSeries"}
BIDI = "/tracker.v1.IngestService/Stream"


def corpus(experiment_id: str, run_id: str) -> dict[str, list[bytes]]:
    """Valid requests per method, touching most fields, as bytes."""
    meta = struct_pb2.Struct()
    meta.update({"host": "n1", "gpus": [0, 1], "nested": {"a": 1.5, "b": None}})
    ts = timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=5)
    cols = columns(["loss", "acc"], [0, 1, 0], [1, 2, 3], [0.5, 0.25, float("nan")])
    msgs: dict[str, list[Any]] = {
        "/tracker.v1.ExperimentService/CreateExperiment": [
            ex.CreateExperimentRequest(name="fuzz", owner="o", description="d",
                                       get_if_exists=True)],
        "/tracker.v1.ExperimentService/CreateRun": [
            ex.CreateRunRequest(experiment_id=experiment_id, name="r", run_key="fuzz-key",
                                seed=3, metadata=meta, params={"lr": "0.1"},
                                tags={"t": "x"}, resume=False)],
        "/tracker.v1.ExperimentService/GetRun": [ex.GetRunRequest(run_id=run_id)],
        "/tracker.v1.ExperimentService/GetExperiment": [
            ex.GetExperimentRequest(experiment_id=experiment_id, runs_page_size=5)],
        "/tracker.v1.ExperimentService/ListExperiments": [
            ex.ListExperimentsRequest(owner="o", name_prefix="f", page_size=3,
                                      created_after=ts, created_before=ts,
                                      statuses=[ex.EXPERIMENT_STATUS_ACTIVE])],
        "/tracker.v1.ExperimentService/UpdateExperiment": [
            ex.UpdateExperimentRequest(experiment_id=experiment_id, description="x")],
        "/tracker.v1.ExperimentService/SearchRuns": [
            ex.SearchRunsRequest(experiment_ids=[experiment_id],
                                 filter='params.lr < 0.5 and metrics.loss.min > 0',
                                 order_by=["metrics.loss desc"], page_size=2)],
        "/tracker.v1.ExperimentService/FinishRun": [
            ex.FinishRunRequest(run_id=run_id, status=ex.RUN_STATUS_FINISHED, ended_at=ts)],
        "/tracker.v1.ExperimentService/LogParams": [
            ex.LogParamsRequest(run_id=run_id, params={"p": "1"})],
        "/tracker.v1.ExperimentService/SetTags": [
            ex.SetTagsRequest(run_id=run_id, tags={"a": "b"}, delete_keys=["c"])],
        "/tracker.v1.IngestService/LogMetrics": [
            ingest_pb2.LogMetricsRequest(
                writer=ingest_pb2.Open(run_id=run_id, writer_id="fuzz-unary", rank=1),
                batch=ingest_pb2.Batch(seq=0, columns=cols))],
        "/tracker.v1.MetricsQueryService/ListMetricKeys": [
            q.ListMetricKeysRequest(run_id=run_id)],
        "/tracker.v1.MetricsQueryService/GetMetricSeries": [
            q.GetMetricSeriesRequest(run_ids=[run_id], keys=["loss"], start_step=0,
                                     end_step=100, max_points=10,
                                     downsampling=q.DOWNSAMPLING_LTTB)],
        "/tracker.v1.MetricsQueryService/GetLatestMetrics": [
            q.GetLatestMetricsRequest(run_ids=[run_id], keys=["loss"])],
        "/tracker.v1.MetricsQueryService/GetBestRuns": [
            q.GetBestRunsRequest(experiment_ids=[experiment_id], key="loss",
                                 goal=q.GOAL_MINIMIZE, on=q.SUMMARY_FIELD_MIN, limit=3,
                                 filter="attempt >= 0")],
        "/tracker.v1.MetricsQueryService/CompareRuns": [q.CompareRunsRequest(run_ids=[run_id])],
        "/tracker.v1.MetricsQueryService/StreamMetricSeries": [
            q.StreamMetricSeriesRequest(run_id=run_id, key="loss", points_per_message=4)],
        "/grpc.health.v1.Health/Check": [health_pb2.HealthCheckRequest(service="")],
        BIDI: [open_req(run_id, "fuzz-stream", rank=2), batch_req(1, cols)],
    }
    return {m: [x.SerializeToString() for x in xs] for m, xs in msgs.items()}


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One random mutation: flips, truncation, insertion, duplication, splices, or a
    field header with an absurd length."""
    b = bytearray(data)
    kind = rng.randrange(7)
    if kind == 0 and b:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    elif kind == 1 and b:
        b = b[: rng.randrange(len(b))]
    elif kind == 2:
        at = rng.randrange(len(b) + 1)
        b[at:at] = rng.randbytes(rng.randint(1, 16))
    elif kind == 3:
        b = b + b
    elif kind == 4 and b:
        i, j = sorted(rng.randrange(len(b)) for _ in range(2))
        b[i:j] = rng.randbytes(j - i)
    elif kind == 5:
        field_no = rng.randint(1, 20)
        b += bytes([(field_no << 3) | 2]) + b"\xff\xff\xff\xff\x07" + rng.randbytes(4)
    else:
        b = bytearray(rng.randbytes(rng.randint(0, 64)))
    return bytes(b)


@dataclass
class Tally:
    """Status codes seen per method; what was improper."""

    codes: dict[str, dict[str, int]] = field(default_factory=dict)
    bad: list[str] = field(default_factory=list)

    def add(self, method: str, code: grpc.StatusCode, details: str, sample: bytes) -> None:
        per = self.codes.setdefault(method, {})
        per[code.name] = per.get(code.name, 0) + 1
        if code not in PROPER_CODES and len(self.bad) < 20:
            self.bad.append(f"{method}: {code.name} {details[:120]!r} for {sample[:40].hex()}")


def call_once(channel: grpc.Channel, method: str, payload: bytes | list[bytes],
              timeout: float = 10.0) -> tuple[grpc.StatusCode, str]:
    """Send raw bytes to ``method``; the status it ended with."""
    try:
        if method == BIDI:
            frames = payload if isinstance(payload, list) else [payload]
            stream = channel.stream_stream(method, request_serializer=None,
                                           response_deserializer=None)
            for _ in stream(iter(frames), timeout=timeout):
                pass
        elif method in SERVER_STREAM:
            call: Callable[..., Any] = channel.unary_stream(
                method, request_serializer=None, response_deserializer=None)
            for _ in call(payload, timeout=timeout):
                pass
        else:
            unary = channel.unary_unary(method, request_serializer=None,
                                        response_deserializer=None)
            unary(payload, timeout=timeout)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def fuzz(channel: grpc.Channel, seeds: dict[str, list[bytes]], rounds: int, seed: int,
         tally: Tally) -> None:
    """``rounds`` mutated or random calls per method."""
    rng = random.Random(seed)
    for method, samples in seeds.items():
        for _ in range(rounds):
            if method == BIDI:
                frames = [bytes(f) for f in samples]
                i = rng.randrange(len(frames))
                frames[i] = mutate(rng, frames[i])
                if rng.random() < 0.3:
                    frames.append(mutate(rng, frames[-1]))
                code, details = call_once(channel, method, frames)
                sample = frames[i]
            else:
                sample = mutate(rng, rng.choice(samples))
                code, details = call_once(channel, method, sample)
            tally.add(method, code, details, sample)
