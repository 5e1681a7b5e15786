"""JSON encoding: NaN and infinities as strings, int64 beyond 2^53 as strings, both ways,
through a real server (written over HTTP, read over HTTP and over gRPC)."""

from __future__ import annotations

import json
import math

import grpc
import httpx
import numpy as np
import orjson

from tests.http_support import API, log, new_run, ok, problem
from tests.support import ServerThread
from tracker_proto.v1 import query_pb2, query_pb2_grpc
from tracker_server.http import encoding

BIG = 2**53 + 1  # the first integer a double cannot hold
I64_MAX, I64_MIN = 2**63 - 1, -(2**63)


def test_encoding_helpers_are_exact() -> None:
    assert encoding.enc_float(math.nan) == "NaN"
    assert encoding.enc_float(-math.inf) == "-Infinity" and encoding.enc_float(1.5) == 1.5
    assert encoding.enc_int(2**53) == 2**53 and encoding.enc_int(-BIG) == str(-BIG)
    floats = np.array([1.0, -0.0, math.nan, math.inf, -math.inf])
    text = encoding.dumps({"v": encoding.float_array(floats)})
    assert text == b'{"v":[1.0,-0.0,"NaN","Infinity","-Infinity"]}'
    assert encoding.dumps(encoding.float_array(np.array([0.1, 2.5]))) == b"[0.1,2.5]"
    ints = np.array([1, BIG, I64_MIN, -(2**53)], dtype=np.int64)
    assert json.loads(encoding.dumps(encoding.int_array(ints))) == [
        1, str(BIG), str(I64_MIN), -(2**53)]
    assert encoding.dumps(encoding.int_array(np.array([BIG, I64_MAX]))) == (
        f'["{BIG}","{I64_MAX}"]'.encode())
    back = encoding.int_column([1, str(BIG), str(I64_MAX)], "steps")
    assert back.tolist() == [1, BIG, I64_MAX] and back.dtype == np.int64
    vals = encoding.float_column([1, "NaN", "Infinity", "-Infinity", -0.0])
    assert math.isnan(vals[1]) and vals[2] == math.inf and vals[3] == -math.inf
    assert math.copysign(1, vals[4]) == -1
    meta = encoding.plain({"a": [math.nan, BIG, True, None, {"b": 2**70}]})
    assert meta == {"a": ["NaN", str(BIG), True, None, {"b": str(2**70)}]}


def test_special_floats_and_big_ints_round_trip(server: ServerThread, hc: httpx.Client
                                                ) -> None:
    rid = new_run(hc, seed=str(BIG))["run_id"]
    steps = [0, 1, 2, 3, 4, BIG, I64_MAX]
    values = ["NaN", "Infinity", "-Infinity", -0.0, 1.5, 2.25, 1e308]
    walls = [I64_MIN, -1, 0, 2**53, BIG, 1_700_000_000_123_456_789, I64_MAX]
    sent = {"keys": ["x"], "key_index": [0] * 7, "steps": [str(s) if s > 2**53 else s
                                                          for s in steps],
            "values": values, "wall_time_ns": [str(w) for w in walls]}
    assert log(hc, rid, **sent)["points_written"] == 7
    raw = hc.get(f"{API}/runs/{rid}/metrics/x", params={"max_points": 100})
    (series,) = ok(raw)["series"]
    assert series["steps"] == [0, 1, 2, 3, 4, str(BIG), str(I64_MAX)]
    assert series["values"][:3] == ["NaN", "Infinity", "-Infinity"]
    assert series["values"][4:] == [1.5, 2.25, 1e308]
    assert '"values":["NaN","Infinity","-Infinity",-0.0,' in raw.text  # -0.0 kept
    assert series["wall_time_ns"] == [str(I64_MIN), -1, 0, 2**53, str(BIG),
                                      str(walls[5]), str(I64_MAX)]
    # JavaScript's JSON.parse would round no integer: none beyond 2^53 anywhere.
    def integers(value: object) -> list[int]:
        if isinstance(value, dict):
            return [n for v in value.values() for n in integers(v)]
        if isinstance(value, list):
            return [n for v in value for n in integers(v)]
        return [value] if isinstance(value, int) and not isinstance(value, bool) else []
    assert all(abs(n) <= 2**53 for n in integers(orjson.loads(raw.content)))
    run = ok(hc.get(f"{API}/runs/{rid}"))
    assert run["seed"] == str(BIG)
    (summary,) = run["summaries"]
    assert summary["last_step"] == str(I64_MAX) and summary["last_value"] == 1e308
    assert summary["last_wall_time_ns"] == str(I64_MAX) and summary["first_step"] == 0
    # The same points over gRPC, bit for bit.
    with grpc.insecure_channel(server.address) as channel:
        reply = query_pb2_grpc.MetricsQueryServiceStub(channel).GetMetricSeries(
            query_pb2.GetMetricSeriesRequest(run_ids=[rid], keys=["x"], max_points=100))
    (got,) = reply.series
    assert list(got.steps) == steps and list(got.wall_time_ns) == walls
    assert np.array(got.values).tobytes() == np.array(
        [math.nan, math.inf, -math.inf, -0.0, 1.5, 2.25, 1e308]).tobytes()


def test_rows_form_and_numbers_for_big_values(hc: httpx.Client) -> None:
    rid = new_run(hc)["run_id"]
    log(hc, rid, writer_id="w", seq=1, points=[
        {"key": "a", "step": BIG, "value": "NaN", "wall_time_ns": 5},
        {"key": "b", "step": str(I64_MIN), "value": -1e-300},
        {"key": "a", "step": 1, "value": "-Infinity", "wall_time_ns": str(BIG)},
    ])
    (a,) = ok(hc.get(f"{API}/runs/{rid}/metrics/a"))["series"]
    assert a["steps"] == [1, str(BIG)] and a["values"] == ["-Infinity", "NaN"]
    assert a["wall_time_ns"] == [str(BIG), 5]
    (b,) = ok(hc.get(f"{API}/runs/{rid}/metrics/b"))["series"]
    assert b["steps"] == [str(I64_MIN)] and b["values"] == [-1e-300]
    assert isinstance(b["wall_time_ns"][0], str)  # server clock: ~1.7e18 ns


def test_out_of_range_and_lossy_numbers_are_refused(hc: httpx.Client) -> None:
    rid = new_run(hc)["run_id"]
    url = f"{API}/runs/{rid}/metrics"
    base = {"keys": ["x"], "key_index": [0]}
    for steps, values in ([[2**63], [1.0]], [[str(2**63)], [1.0]], [[1.5], [1.0]],
                          [[True], [1.0]], [["1e3"], [1.0]], [[1], ["nan"]], [[1], [None]],
                          [[1], [True]], [[1], ["1.0"]]):
        body = problem(hc.post(url, json={**base, "steps": steps, "values": values}), 400)
        assert body["errors"][0]["field"] in ("steps[0]", "values[0]", "steps"), body
    seed = problem(hc.post(f"{API}/runs", json={"experiment_id": new_run(hc)["experiment_id"],
                                                "seed": 2**64}), 400)
    assert seed["errors"][0]["field"] == "seed"
