"""StreamMetricSeries in its packed form (little-endian byte columns) against a real
server: the same points, bit for bit, as the repeated form; filters, message sizes and
the old form for requests that do not ask for packed."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import grpc
import numpy as np
import pytest

import tracker_client
from tests.query_support import code_of, log_points, new_experiment, new_run, query_stub
from tests.support import Api, ServerThread, batch_req, columns, open_req, run_stream
from tracker_proto.v1 import query_pb2 as q
from tracker_server.config import Settings

I64_MIN, I64_MAX = -(2**63), 2**63 - 1

Points = tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any],
               np.ndarray[Any, Any]]
"""ranks, steps, values, wall times of an export, one entry per point."""


def export(api: Api, **kw: Any) -> list[q.StreamMetricSeriesResponse]:
    return list(query_stub(api).StreamMetricSeries(q.StreamMetricSeriesRequest(**kw)))


def packed_points(msgs: list[q.StreamMetricSeriesResponse]) -> Points:
    """Points of packed messages, checking that only the packed form is filled."""
    for m in msgs:
        assert not m.steps and not m.values and not m.wall_time_ns
        sizes = {len(m.packed_steps), len(m.packed_values), len(m.packed_wall_time_ns)}
        assert len(sizes) == 1 and sizes.pop() % 8 == 0
    return (
        np.concatenate([np.full(len(m.packed_steps) // 8, m.rank) for m in msgs]
                   or [np.empty(0, np.int64)]),
        np.frombuffer(b"".join(m.packed_steps for m in msgs), "<i8"),
        np.frombuffer(b"".join(m.packed_values for m in msgs), "<f8"),
        np.frombuffer(b"".join(m.packed_wall_time_ns for m in msgs), "<i8"),
    )


def repeated_points(msgs: list[q.StreamMetricSeriesResponse]) -> Points:
    """Points of repeated-field messages, checking that the packed form is empty."""
    for m in msgs:
        assert not m.packed_steps and not m.packed_values and not m.packed_wall_time_ns
        assert len(m.steps) == len(m.values) == len(m.wall_time_ns)
    return (
        np.concatenate([np.full(len(m.steps), m.rank) for m in msgs]
                   or [np.empty(0, np.int64)]),
        np.array([s for m in msgs for s in m.steps], dtype=np.int64),
        np.array([v for m in msgs for v in m.values], dtype=np.float64),
        np.array([w for m in msgs for w in m.wall_time_ns], dtype=np.int64),
    )


def bits(points: Points) -> list[list[int]]:
    """Every column as integers (values as their IEEE 754 bit patterns)."""
    ranks, steps, values, wall = points
    return [np.asarray(ranks, dtype=np.int64).tolist(), steps.tolist(),
            values.view(np.uint64).tolist(), wall.tolist()]


def log_exact(api: Api, run: str, key: str, steps: Any, values: Any, wall: Any,
              rank: int = 0) -> None:
    cols = columns([key], np.zeros(len(steps)), steps, values, wall)
    resp = run_stream(api, [open_req(run, f"w-{rank}", rank), batch_req(1, cols)])
    assert resp[-1].ack.committed_through_seq == 1, resp


SPECIAL_VALUES = np.array([
    0x7FF8000000000000,  # the default quiet NaN
    0x7FF8DEADBEEF0001,  # quiet NaN with a payload
    0xFFF8000000000123,  # negative quiet NaN with a payload
    0x7FF0000000000001,  # signalling NaN
    0x7FF0000000000000,  # +Inf
    0xFFF0000000000000,  # -Inf
    0x8000000000000000,  # -0.0
    0x0000000000000000,  # +0.0
    0x0000000000000001,  # smallest subnormal
    0x7FEFFFFFFFFFFFFF,  # largest finite
    0x3FD5555555555555,  # 1/3
], dtype=np.uint64).view(np.float64)


def test_packed_and_repeated_exports_are_bit_identical(api: Api) -> None:
    run = new_run(api, new_experiment(api))
    n = len(SPECIAL_VALUES)
    steps = np.array([I64_MIN, I64_MIN + 1, -5, -1, 0, 1, 2, 10**12, 2**62, I64_MAX - 1,
                      I64_MAX], dtype=np.int64)
    wall = np.array([I64_MIN, I64_MAX, -1, 0, 1, 2, 3, 4, 5, 6, 7], dtype=np.int64)
    log_exact(api, run, "x", steps, SPECIAL_VALUES, wall, rank=0)
    log_exact(api, run, "x", steps[::-1].copy(), SPECIAL_VALUES, wall, rank=2)
    packed = packed_points(export(api, run_id=run, key="x", packed=True))
    repeated = repeated_points(export(api, run_id=run, key="x"))
    assert bits(packed) == bits(repeated)
    # And both are what was logged, in (rank, step) order.
    order = np.argsort(steps[::-1])
    want = (np.repeat([0, 2], n), np.concatenate([steps, steps[::-1][order]]),
            np.concatenate([SPECIAL_VALUES, SPECIAL_VALUES[order]]),
            np.concatenate([wall, wall[order]]))
    assert bits(packed) == bits(want)


def test_packed_export_filters_by_rank_and_step(api: Api) -> None:
    run = new_run(api, new_experiment(api))
    n = 25_000
    log_points(api, run, "x", np.arange(n), np.arange(n) * 0.5, rank=0)
    log_points(api, run, "x", np.arange(10), np.arange(10.0), rank=3)
    ranks, steps, values, _ = packed_points(export(
        api, run_id=run, key="x", rank=0, start_step=100, end_step=199, packed=True))
    assert set(ranks.tolist()) == {0}
    assert steps.tolist() == list(range(100, 200))
    assert values.tolist() == (np.arange(100, 200) * 0.5).tolist()
    ranks, steps, _, _ = packed_points(export(api, run_id=run, key="x", rank=3, packed=True))
    assert set(ranks.tolist()) == {3} and steps.tolist() == list(range(10))
    ranks, steps, _, _ = packed_points(export(api, run_id=run, key="x", start_step=5,
                                              end_step=7, packed=True))
    assert ranks.tolist() == [0, 0, 0, 3, 3, 3] and steps.tolist() == [5, 6, 7, 5, 6, 7]
    assert export(api, run_id=run, key="x", start_step=n, packed=True) == []
    assert export(api, run_id=run, key="nothing", packed=True) == []


def test_packed_export_respects_points_per_message(api: Api) -> None:
    run = new_run(api, new_experiment(api))
    n = 25_000
    log_points(api, run, "x", np.arange(n), np.arange(n) * 0.25)
    msgs = export(api, run_id=run, key="x", points_per_message=4000, packed=True)
    sizes = [len(m.packed_steps) // 8 for m in msgs]
    assert max(sizes) <= 4000 and sum(sizes) == n
    assert packed_points(msgs)[1].tolist() == list(range(n))
    default = export(api, run_id=run, key="x", packed=True)
    assert max(len(m.packed_steps) // 8 for m in default) <= 10_000
    err = code_of(lambda r: list(query_stub(api).StreamMetricSeries(r)),
                  q.StreamMetricSeriesRequest(run_id=run, key="x", packed=True,
                                              points_per_message=100_001))
    assert err == grpc.StatusCode.INVALID_ARGUMENT


def test_request_without_packed_gets_the_repeated_fields(api: Api) -> None:
    run = new_run(api, new_experiment(api))
    log_points(api, run, "x", np.arange(300), np.linspace(0, 1, 300))
    msgs = export(api, run_id=run, key="x", points_per_message=100)
    assert len(msgs) == 3
    _, steps, values, _ = repeated_points(msgs)  # checks that packed_* are empty
    assert steps.tolist() == list(range(300))
    assert values.tolist() == np.linspace(0, 1, 300).tolist()


def test_export_messages_stay_within_a_small_message_limit(settings: Settings) -> None:
    # 64 KiB holds 2,728 packed points (24 bytes each) and 2,338 repeated ones (at most
    # 28 bytes each); the request asks for 100,000 per message.
    limit = 64 * 1024
    srv = ServerThread(replace(settings, max_message_bytes=limit))
    api = Api(srv.address)
    try:
        run = new_run(api, new_experiment(api))
        n = 12_000
        big = np.int64(-(2**62))  # steps and wall times that take 10-byte varints
        for i in range(0, n, 1500):
            s = big + np.arange(i, i + 1500, dtype=np.int64)
            cols = columns(["x"], np.zeros(1500), s, np.full(1500, np.pi), s)
            resp = run_stream(api, [open_req(run, f"w{i}"), batch_req(1, cols)])
            assert resp[-1].ack.committed_through_seq == 1
        for packed in (True, False):
            msgs = export(api, run_id=run, key="x", points_per_message=100_000, packed=packed)
            assert all(m.ByteSize() <= limit for m in msgs)
            points = packed_points(msgs) if packed else repeated_points(msgs)
            assert points[1].tolist() == (big + np.arange(n)).tolist()
    finally:
        api.close()
        srv.stop()


def test_client_history_reads_packed_and_matches_the_repeated_form(api: Api,
                                                                  server: ServerThread) -> None:
    run = new_run(api, new_experiment(api))
    n = len(SPECIAL_VALUES)
    steps = np.arange(n, dtype=np.int64) * 7 - 30
    wall = np.arange(n, dtype=np.int64) + 1_700_000_000 * 10**9
    log_exact(api, run, "x", steps, SPECIAL_VALUES, wall, rank=1)
    log_points(api, run, "y", np.arange(150_000), np.arange(150_000) * 0.5)
    with tracker_client.Api(server=server.address) as client:
        got = client.history(run, ["x", "y"], as_frame=False)
        for column in ("rank", "step", "value", "wall_time_ns"):
            assert got[column].flags.writeable, column
        assert got["key"].tolist() == ["x"] * n + ["y"] * 150_000
        assert got["rank"].tolist() == [1] * n + [0] * 150_000
        assert got["step"].tolist() == steps.tolist() + list(range(150_000))
        assert got["value"][:n].view(np.uint64).tolist() == \
            SPECIAL_VALUES.view(np.uint64).tolist()
        assert got["wall_time_ns"][:n].tolist() == wall.tolist()
        # A range and a rank: fewer points than the stored count reserved.
        part = client.history(run, ["x", "y"], start=0, end=9, rank=0, as_frame=False)
        assert part["key"].tolist() == ["y"] * 10 and part["step"].tolist() == list(range(10))
        single = client.history(run, "x", as_frame=False)  # one message: copied, writable
        assert single["value"].flags.writeable and single["step"].tolist() == steps.tolist()
    repeated = repeated_points(export(api, run_id=run, key="x"))
    assert got["value"][:n].view(np.uint64).tolist() == repeated[2].view(np.uint64).tolist()

    async def read_async() -> dict[str, Any]:
        async with tracker_client.AsyncApi(server=server.address) as aio:
            result: dict[str, Any] = await aio.history(run, ["x", "y"], as_frame=False)
            return result

    again = asyncio.run(read_async())
    for column in ("rank", "step", "wall_time_ns"):
        assert np.array_equal(again[column], got[column]), column
    assert again["value"].view(np.uint64).tolist() == got["value"].view(np.uint64).tolist()


@pytest.mark.parametrize("packed", [True, False])
def test_unknown_run_and_bad_key_fail_the_same_packed_or_not(api: Api, packed: bool) -> None:
    import uuid

    stream = query_stub(api).StreamMetricSeries
    run = new_run(api, new_experiment(api))
    assert code_of(lambda r: list(stream(r)), q.StreamMetricSeriesRequest(
        run_id=str(uuid.uuid4()), key="x", packed=packed)) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda r: list(stream(r)), q.StreamMetricSeriesRequest(
        run_id=run, key="", packed=packed)) == grpc.StatusCode.INVALID_ARGUMENT
