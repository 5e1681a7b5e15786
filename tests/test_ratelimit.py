"""Rate limits per caller: unary requests/s and ingest points/s."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.support import Api, ServerThread, batch_req, columns, count_points, open_req
from tests.test_auth import make_key, md
from tracker_proto.v1 import experiments_pb2, ingest_pb2
from tracker_server.config import Settings
from tracker_server.transport.ratelimit import TokenBucket


def retry_delay_s(exc: grpc.RpcError) -> float:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    raise AssertionError("no RetryInfo")


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=10, burst=10)
    assert bucket.try_take(10) == 0.0
    assert 0 < bucket.try_take(1) <= 0.11
    assert bucket.take(5) == pytest.approx(0.5, abs=0.02)  # into debt: wait it off
    big = TokenBucket(rate=10, burst=10)
    assert big.try_take(50) == 0.0  # larger than the burst: passes when full, then waits
    assert big.try_take(1) > 4


@pytest.fixture
def limited(settings: Settings) -> Iterator[ServerThread]:
    srv = ServerThread(replace(settings, rate_unary_per_s=3, rate_points_per_s=2000))
    try:
        yield srv
    finally:
        srv.stop()


def test_unary_over_the_limit_is_resource_exhausted_with_retry_info(limited: ServerThread) -> None:
    api = Api(limited.address)
    req = experiments_pb2.ListExperimentsRequest()
    try:
        for _ in range(3):
            api.experiments.ListExperiments(req, timeout=5)
        with pytest.raises(grpc.RpcError) as info:
            api.experiments.ListExperiments(req, timeout=5)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        delay = retry_delay_s(info.value)
        assert 0 < delay <= 0.34
        time.sleep(delay + 0.05)
        api.experiments.ListExperiments(req, timeout=5)
    finally:
        api.close()


def test_limits_are_per_api_key(settings: Settings, database_url: str) -> None:
    srv = ServerThread(replace(settings, auth="required", rate_unary_per_s=2))
    api = Api(srv.address)
    a, b = make_key(database_url, "viewer"), make_key(database_url, "viewer")
    req = experiments_pb2.ListExperimentsRequest()
    try:
        for _ in range(2):
            api.experiments.ListExperiments(req, timeout=5, metadata=md(a))
        with pytest.raises(grpc.RpcError) as info:
            api.experiments.ListExperiments(req, timeout=5, metadata=md(a))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        api.experiments.ListExperiments(req, timeout=5, metadata=md(b))  # own bucket
    finally:
        api.close()
        srv.stop()


def test_stream_over_the_points_limit_gets_slow_down_and_loses_nothing(
    limited: ServerThread, database_url: str
) -> None:
    api = Api(limited.address)
    try:
        run_id = api.new_run("rl")
        n, batches = 1000, 5
        reqs = [open_req(run_id, "w")] + [
            batch_req(i + 1, columns(["x"], [0] * n, range(i * n, (i + 1) * n), [1.0] * n))
            for i in range(batches)
        ]
        started = time.monotonic()
        responses = list(api.ingest.Stream(iter(reqs), timeout=30))
        elapsed = time.monotonic() - started
    finally:
        api.close()
    slow = [r.slow_down for r in responses if r.WhichOneof("kind") == "slow_down"]
    assert slow and all(s.retry_after.ToMilliseconds() > 0 for s in slow)
    assert responses[-1].ack.committed_through_seq == batches
    assert count_points(database_url, run_id) == n * batches
    # 5,000 points at 2,000/s with a one-second burst: at least ~1.5 s of reading paused.
    assert elapsed >= 1.2


def test_log_metrics_over_the_points_limit_is_resource_exhausted(settings: Settings) -> None:
    srv = ServerThread(replace(settings, rate_points_per_s=2000))  # no request limit
    api = Api(srv.address)
    try:
        run_id = api.new_run("lm")
        writer = ingest_pb2.Open(run_id=run_id, writer_id="u")

        def log(first: int) -> None:
            api.ingest.LogMetrics(ingest_pb2.LogMetricsRequest(
                writer=writer, batch=ingest_pb2.Batch(columns=columns(
                    ["x"], [0] * 1500, range(first, first + 1500), [0.0] * 1500))), timeout=10)

        log(0)
        with pytest.raises(grpc.RpcError) as info:
            log(1500)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "points" in (info.value.details() or "")
        assert retry_delay_s(info.value) > 0
    finally:
        api.close()
        srv.stop()
