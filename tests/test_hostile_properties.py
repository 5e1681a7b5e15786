"""Properties against a real server and PostgreSQL (Hypothesis).

1. Any interleaving, replay or duplication of batches from several writers — over
   streams, unary calls, concurrent streams of one writer, reconnects from any seq at
   or below the committed one — stores exactly the writers' batches, each once.
2. Arbitrary float64 (NaN payloads, infinities, -0.0, subnormals), int64 step and wall
   time extremes, unicode and maximum-length keys round-trip bit for bit through the
   server: stored, and read back with StreamMetricSeries.
"""

from __future__ import annotations

import struct
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace

import grpc
import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fault.checks import check_summaries
from tests.support import Api, ServerThread, batch_req, columns, open_req
from tracker_proto.v1 import ingest_pb2, metrics_pb2, query_pb2, query_pb2_grpc
from tracker_server.config import Settings
from tracker_server.storage.points_export import materialize_points

INT64 = st.integers(-(2**63), 2**63 - 1)
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True, width=64)
# NaNs with arbitrary payloads and sign, quiet or signalling: any exponent-all-ones bits.
NAN_BITS = st.integers(1, 2**52 - 1).flatmap(
    lambda m: st.sampled_from([0x7FF0000000000000 | m, 0xFFF0000000000000 | m]))
NAN = NAN_BITS.map(lambda b: struct.unpack("<d", b.to_bytes(8, "little"))[0])
VALUE = st.one_of(ANY_FLOAT, NAN,
                  st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308,
                                   1.7976931348623157e308, float("inf"), float("-inf")]))
# Names PostgreSQL text holds (no NUL, no lone surrogates), 1..250 UTF-8 bytes.
KEY = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
              min_size=1, max_size=80).filter(lambda k: len(k.encode()) <= 250)
MAX_KEY = st.sampled_from(["k" * 250, "é" * 125, "\U0001f600" * 62 + "ab", "名" * 83 + "x"])


def bits(v: float) -> bytes:
    return struct.pack("<d", v)


@pytest.fixture
def prop_server(settings: Settings) -> Iterator[ServerThread]:
    # No compactor: it renumbers chunks, which the summary check's tie rules do not need.
    srv = ServerThread(replace(settings, compact_interval_s=0, summary_repair_interval_ms=100))
    try:
        yield srv
    finally:
        srv.stop()


# -- 1. interleavings, replays, duplicates -------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Per writer its batches (steps, values of one key each); the actions."""

    batches: list[list[tuple[list[int], list[float]]]]
    actions: list[tuple[str, int, int, int]]


batch = st.lists(st.tuples(st.integers(0, 40), st.floats(-1e6, 1e6)), min_size=1, max_size=8)
plans = st.integers(2, 3).flatmap(lambda n: st.builds(
    Plan,
    batches=st.lists(st.lists(batch.map(lambda b: ([s for s, _ in b], [v for _, v in b])),
                              min_size=1, max_size=5), min_size=n, max_size=n),
    actions=st.lists(st.tuples(st.sampled_from(["stream", "unary", "pair", "cross"]),
                               st.integers(0, n - 1), st.integers(0, 4), st.integers(1, 5)),
                     max_size=8),
))


class Cluster:
    """Writers of one run against the server, tracking what the server said committed."""

    def __init__(self, api: Api, run_id: str, plan: Plan) -> None:
        self.api = api
        self.run_id = run_id
        self.plan = plan
        self.committed = [0] * len(plan.batches)
        self.lock = threading.Lock()

    def cols(self, w: int, seq: int) -> metrics_pb2.MetricColumns:
        steps, values = self.plan.batches[w][seq - 1]
        return columns(["m"], [0] * len(steps), steps, values,
                       [w * 10**12 + seq * 10**6 + i for i in range(len(steps))])

    def _saw(self, w: int, seq: int) -> None:
        with self.lock:
            self.committed[w] = max(self.committed[w], seq)

    def stream(self, w: int, back: int, count: int) -> None:
        """A stream from ``back`` seqs before the next one (a replay), ``count`` long."""
        total = len(self.plan.batches[w])
        with self.lock:
            start = max(1, self.committed[w] + 1 - back)
        seqs = list(range(start, min(total, start + count - 1) + 1))
        reqs = [open_req(self.run_id, f"w{w}", rank=w)] + [
            batch_req(s, self.cols(w, s)) for s in seqs]
        try:
            for resp in self.api.ingest.Stream(iter(reqs), timeout=30):
                kind = resp.WhichOneof("kind")
                if kind == "opened":
                    self._saw(w, resp.opened.committed_seq)
                elif kind == "ack":
                    self._saw(w, resp.ack.committed_through_seq)
        except grpc.RpcError as exc:
            # A concurrent stream of the same writer may leave a gap behind this one:
            # the server aborts it and the client resends, as a real one would.
            assert exc.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.INVALID_ARGUMENT), exc
            assert exc.code() != grpc.StatusCode.INVALID_ARGUMENT or "gap" in (exc.details() or "")

    def unary(self, w: int, back: int) -> None:
        total = len(self.plan.batches[w])
        with self.lock:
            seq = min(total, max(1, self.committed[w] + 1 - back))
        req = ingest_pb2.LogMetricsRequest(
            writer=ingest_pb2.Open(run_id=self.run_id, writer_id=f"w{w}", rank=w),
            batch=ingest_pb2.Batch(seq=seq, columns=self.cols(w, seq)))
        try:
            self._saw(w, self.api.ingest.LogMetrics(req, timeout=30).committed_through_seq)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.ABORTED, exc  # a gap: resent later

    def run(self, kind: str, w: int, back: int, count: int) -> None:
        if kind == "stream":
            self.stream(w, back, count)
        elif kind == "unary":
            self.unary(w, back)
        else:
            other = w if kind == "pair" else (w + 1) % len(self.plan.batches)
            threads = [threading.Thread(target=self.stream, args=(w, back, count)),
                       threading.Thread(target=self.stream, args=(other, back, count))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)

    def complete(self) -> None:
        for w, batches in enumerate(self.plan.batches):
            for _ in range(5):
                if self.committed[w] >= len(batches):
                    break
                self.stream(w, 0, len(batches))
            assert self.committed[w] == len(batches), (w, self.committed[w])


def _stored(url: str, run_id: str) -> Counter[tuple[int, int, int, bytes]]:
    with psycopg.connect(url) as conn, conn.cursor(binary=True) as cur:
        materialize_points(conn, [run_id])
        cur.execute("SELECT rank, step, wall_ns, value FROM metric_points WHERE run_id = %s",
                    (run_id,))
        return Counter((int(r), int(s), int(w), bits(v)) for r, s, w, v in cur.fetchall())


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=plans)
def test_any_interleaving_replay_or_duplication_stores_each_batch_once(
        prop_server: ServerThread, database_url: str, plan: Plan) -> None:
    api = Api(prop_server.address)
    try:
        run_id = api.new_run(f"prop-{uuid.uuid4().hex[:8]}", exp_name="props")
        cluster = Cluster(api, run_id, plan)
        for action in plan.actions:
            cluster.run(*action)
        cluster.complete()
        expected: Counter[tuple[int, int, int, bytes]] = Counter()
        for w, batches in enumerate(plan.batches):
            for seq, (steps, values) in enumerate(batches, start=1):
                for i, (s, v) in enumerate(zip(steps, values, strict=True)):
                    expected[(w, s, w * 10**12 + seq * 10**6 + i, bits(v))] += 1
        assert _stored(database_url, run_id) == expected
        assert not check_summaries(prop_server.address, database_url, run_id)
    finally:
        api.close()


# -- 2. round trips ------------------------------------------------------------------------

points = st.lists(st.tuples(INT64, VALUE, INT64), min_size=1, max_size=60,
                  unique_by=lambda p: p[0])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(pts=points, key=st.one_of(KEY, MAX_KEY), rank=st.integers(0, 2**31 - 1))
def test_values_steps_wall_times_and_keys_round_trip_exactly(
        prop_server: ServerThread, database_url: str, pts: list[tuple[int, float, int]],
        key: str, rank: int) -> None:
    api = Api(prop_server.address)
    try:
        run_id = api.new_run(f"rt-{uuid.uuid4().hex[:8]}", exp_name="round-trips")
        steps = np.array([p[0] for p in pts], dtype=np.int64)
        values = np.array([p[1] for p in pts], dtype=np.float64)
        wall = np.array([p[2] for p in pts], dtype=np.int64)
        reqs = [open_req(run_id, "w", rank=rank),
                batch_req(1, columns([key], [0] * len(pts), steps, values, wall))]
        responses = list(api.ingest.Stream(iter(reqs), timeout=30))
        assert responses[-1].ack.committed_through_seq == 1, responses
        want = sorted((int(s), bits(float(v)), int(w)) for s, v, w in zip(steps, values, wall,
                                                                           strict=True))
        with psycopg.connect(database_url) as conn, conn.cursor(binary=True) as cur:
            materialize_points(conn, [run_id])
            cur.execute("SELECT key, rank, step, value, wall_ns FROM metric_points "
                        "WHERE run_id = %s", (run_id,))
            rows = cur.fetchall()
        assert {r[0] for r in rows} == {key} and {r[1] for r in rows} == {rank}
        assert sorted((int(r[2]), bits(r[3]), int(r[4])) for r in rows) == want
        query = query_pb2_grpc.MetricsQueryServiceStub(api.channel)
        read = [(int(s), bits(v), int(w))
                for msg in query.StreamMetricSeries(
                    query_pb2.StreamMetricSeriesRequest(run_id=run_id, key=key), timeout=30)
                for s, v, w in zip(msg.steps, msg.values, msg.wall_time_ns, strict=True)]
        assert read == want  # in step order, bit for bit
        packed = list(query.StreamMetricSeries(query_pb2.StreamMetricSeriesRequest(
            run_id=run_id, key=key, packed=True), timeout=30))
        p_steps, p_values, p_wall = (b"".join(getattr(m, f) for m in packed) for f in
                                     ("packed_steps", "packed_values", "packed_wall_time_ns"))
        assert [(int(s), p_values[8 * i:8 * i + 8], int(w)) for i, (s, w) in enumerate(zip(
            np.frombuffer(p_steps, "<i8"), np.frombuffer(p_wall, "<i8"), strict=True))] == want
        keys = query.ListMetricKeys(query_pb2.ListMetricKeysRequest(run_id=run_id)).keys
        assert [k.summary.key for k in keys] == [key]
        assert not check_summaries(prop_server.address, database_url, run_id)
    finally:
        api.close()
