"""Bad input: the right status, a precise message, nothing partial written, other
streams unaffected."""

from __future__ import annotations

import threading
from dataclasses import replace

import grpc
import numpy as np
import pytest

from tests.support import (
    Api,
    ServerThread,
    batch_req,
    columns,
    count_points,
    open_req,
    run_stream,
)
from tracker_proto.v1 import ingest_pb2, metrics_pb2
from tracker_server.config import Settings


def _good(n: int = 100, seq_offset: int = 0) -> metrics_pb2.MetricColumns:
    return columns(["loss"], np.zeros(n), np.arange(n) + seq_offset, np.ones(n))


def _rejected(responses: list[ingest_pb2.StreamResponse]) -> list[ingest_pb2.BatchRejected]:
    return [r.rejected for r in responses if r.WhichOneof("kind") == "rejected"]


def _stream_error(api: Api, reqs: list[ingest_pb2.StreamRequest]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        run_stream(api, reqs)
    return info.value


@pytest.mark.parametrize(
    ("cols", "fragment"),
    [
        (metrics_pb2.MetricColumns(keys=["a"], key_index=[0, 0], steps=[1, 2], values=[1.0],
                                   wall_time_ns=[1, 2]),
         "column lengths differ (key_index=2, steps=2, values=1, wall_time_ns=2)"),
        (metrics_pb2.MetricColumns(keys=["a"], key_index=[0, 3], steps=[1, 2], values=[1, 2],
                                   wall_time_ns=[1, 2]),
         "1 point(s) have a key index out of range (key table has 1 entries; first bad point 1)"),
        (metrics_pb2.MetricColumns(keys=[""], key_index=[0], steps=[1], values=[1],
                                   wall_time_ns=[1]),
         "invalid metric name"),
        (metrics_pb2.MetricColumns(keys=["x" * 251], key_index=[0], steps=[1], values=[1],
                                   wall_time_ns=[1]),
         "invalid metric name"),
    ],
    ids=["mismatched-lengths", "key-index-out-of-range", "empty-key", "long-key"],
)
def test_bad_batch_is_rejected_whole_and_stream_continues(
    api: Api, database_url: str, cols: metrics_pb2.MetricColumns, fragment: str
) -> None:
    run_id = api.new_run()
    resp = run_stream(
        api, [open_req(run_id, "w"), batch_req(1, _good()), batch_req(2, cols),
              batch_req(3, _good(seq_offset=100))]
    )
    rejected = _rejected(resp)
    assert len(rejected) == 1
    assert rejected[0].seq == 2
    assert rejected[0].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert fragment in rejected[0].message or any(fragment in e.reason for e in rejected[0].errors)
    assert resp[-1].ack.committed_through_seq == 3  # the rejected seq is consumed
    assert count_points(database_url, run_id) == 200  # nothing of batch 2


def test_empty_batch_is_a_no_op_that_consumes_its_seq(api: Api, database_url: str) -> None:
    run_id = api.new_run()
    resp = run_stream(api, [open_req(run_id, "w"), batch_req(1, _good()),
                            batch_req(2, metrics_pb2.MetricColumns()),
                            batch_req(3, _good(seq_offset=100))])
    assert _rejected(resp) == []
    assert resp[-1].ack.committed_through_seq == 3
    assert count_points(database_url, run_id) == 200


def test_key_index_errors_name_the_points(api: Api) -> None:
    run_id = api.new_run()
    cols = metrics_pb2.MetricColumns(keys=["a"], key_index=[0, 5, 0, 9], steps=[1, 2, 3, 4],
                                     values=[1, 2, 3, 4], wall_time_ns=[1, 2, 3, 4])
    rejected = _rejected(run_stream(api, [open_req(run_id, "w"), batch_req(1, cols)]))
    assert [(e.point_index, e.reason) for e in rejected[0].errors] == [
        (1, "5 >= 1 keys"), (3, "9 >= 1 keys")]


def test_batch_before_open(api: Api) -> None:
    err = _stream_error(api, [batch_req(1, _good())])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "first message of a stream must be Open" in err.details()


def test_open_twice(api: Api) -> None:
    run_id = api.new_run()
    err = _stream_error(api, [open_req(run_id, "w"), open_req(run_id, "w")])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_seq_going_backwards(api: Api, database_url: str) -> None:
    run_id = api.new_run()
    err = _stream_error(
        api, [open_req(run_id, "w"), batch_req(1, _good()), batch_req(2, _good()),
              batch_req(1, _good())]
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "seq going backwards: 1 after 2" in err.details()


def test_seq_gap(api: Api) -> None:
    run_id = api.new_run()
    err = _stream_error(api, [open_req(run_id, "w"), batch_req(1, _good()), batch_req(3, _good())])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "gap" in err.details()
    err = _stream_error(api, [open_req(run_id, "w2"), batch_req(5, _good())])
    assert "first batch seq 5 leaves a gap" in err.details()


def test_seq_zero(api: Api) -> None:
    run_id = api.new_run()
    err = _stream_error(api, [open_req(run_id, "w"), batch_req(0, _good())])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_run_is_not_found(api: Api) -> None:
    err = _stream_error(api, [open_req("00000000-0000-0000-0000-000000000001", "w")])
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_malformed_open(api: Api) -> None:
    err = _stream_error(api, [open_req("not-a-uuid", "")])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "run_id: not a UUID" in err.details() and "writer_id: must not be empty" in err.details()


def test_attempt_from_the_future(api: Api) -> None:
    run_id = api.new_run()
    err = _stream_error(api, [open_req(run_id, "w", attempt=3)])
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_limits_points_and_message_size(settings: Settings, database_url: str) -> None:
    srv = ServerThread(replace(settings, max_batch_points=1000, max_message_bytes=64 * 1024))
    api = Api(srv.address)
    try:
        run_id = api.new_run()
        resp = run_stream(api, [open_req(run_id, "w"), batch_req(1, _good(1001))])
        rej = _rejected(resp)
        assert "1001 points exceed the limit of 1000 per batch" in rej[0].message
        # Over the message limit: gRPC itself refuses it (RESOURCE_EXHAUSTED).
        err = _stream_error(api, [open_req(run_id, "w2"), batch_req(1, _good(20_000))])
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Unary fallback: the same validation, as a status.
        with pytest.raises(grpc.RpcError) as info:
            api.ingest.LogMetrics(ingest_pb2.LogMetricsRequest(
                writer=ingest_pb2.Open(run_id=run_id, writer_id="u"),
                batch=ingest_pb2.Batch(seq=1, columns=_good(1001))), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert count_points(database_url, run_id) == 0
        # The server keeps serving.
        ok = run_stream(api, [open_req(run_id, "w3"), batch_req(1, _good(10))])
        assert ok[-1].ack.committed_through_seq == 1
    finally:
        api.close()
        srv.stop()


def test_bad_stream_does_not_disturb_others(api: Api, database_url: str) -> None:
    run_id = api.new_run()
    good_result: list[ingest_pb2.StreamResponse] = []

    def good() -> None:
        reqs = [open_req(run_id, "good")] + [batch_req(i + 1, _good(1000, i * 1000))
                                             for i in range(30)]
        good_result.extend(run_stream(api, reqs))

    t = threading.Thread(target=good)
    t.start()
    for i in range(10):
        _stream_error(api, [open_req(run_id, f"bad{i}"), batch_req(2, _good())])
        _stream_error(api, [batch_req(1, _good())])
    t.join(30)
    assert good_result[-1].ack.committed_through_seq == 30
    assert count_points(database_url, run_id) == 30_000


_GARBAGE = b"\x0a\xff\xff\xff\xff\x0f"  # field 1, length-delimited, with an impossible length


def _raw_stream(api: Api, frames: list[bytes]) -> grpc.RpcError:
    call = api.channel.stream_stream("/tracker.v1.IngestService/Stream",
                                     request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.RpcError) as info:
        list(call(iter(frames), timeout=10))
    return info.value


def test_undecodable_stream_message_is_invalid_argument(api: Api, database_url: str) -> None:
    run_id = api.new_run()
    # As the first message, and after a valid Open and batch.
    err = _raw_stream(api, [_GARBAGE])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    assert "not a valid message" in (err.details() or "")
    good = [open_req(run_id, "w").SerializeToString(), batch_req(1, _good()).SerializeToString()]
    err = _raw_stream(api, [*good, _GARBAGE])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    # The server keeps serving; the good batch before the garbage is stored once.
    resp = run_stream(api, [open_req(run_id, "w"), batch_req(1, _good()),
                            batch_req(2, _good(seq_offset=100))])
    assert resp[-1].ack.committed_through_seq == 2
    assert count_points(database_url, run_id) == 200


def test_undecodable_unary_request_is_invalid_argument(api: Api) -> None:
    for method in ("/tracker.v1.IngestService/LogMetrics",
                   "/tracker.v1.ExperimentService/CreateRun",
                   "/grpc.health.v1.Health/Check"):
        call = api.channel.unary_unary(method, request_serializer=None,
                                       response_deserializer=None)
        with pytest.raises(grpc.RpcError) as info:
            call(_GARBAGE, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, method


def test_replay_of_committed_batches_is_acked(api: Api, database_url: str) -> None:
    run_id = api.new_run()
    first = run_stream(api, [open_req(run_id, "w")] + [
        batch_req(s, _good(10, s * 10)) for s in (1, 2, 3)])
    assert first[-1].ack.committed_through_seq == 3
    again = run_stream(api, [open_req(run_id, "w")] + [
        batch_req(s, _good(10, s * 10)) for s in (1, 2, 3)])
    assert again[0].opened.committed_seq == 3
    acks = [r.ack.committed_through_seq for r in again if r.WhichOneof("kind") == "ack"]
    assert acks == [3, 3, 3]  # one per dropped batch
    assert count_points(database_url, run_id) == 30
