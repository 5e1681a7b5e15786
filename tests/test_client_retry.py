"""Reconnect, resend-after-committed, back-off and SlowDown with grpc_testing and fake time."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import grpc_testing
import pytest
from google.protobuf import duration_pb2

from tracker_client._clock import Backoff
from tracker_client._spool import Spool
from tracker_client._stats import DeliveryStats
from tracker_client._stream import StreamSender
from tracker_proto.v1 import ingest_pb2, metrics_pb2

pytestmark = pytest.mark.timeout(30)

STREAM = ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].methods_by_name["Stream"]


class FakeClock:
    """Monotonic time that only moves when told to; sleeps are recorded, not waited."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.lock = threading.Lock()

    def monotonic(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float, wake: threading.Event) -> bool:
        with self.lock:
            self.sleeps.append(seconds)
            self.now += seconds
        return wake.is_set()

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def test_backoff_grows_with_jitter_and_resets() -> None:
    b = Backoff(initial_s=0.1, max_s=2.0, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(8)]
    bases = [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0]
    for d, base in zip(delays, bases, strict=True):
        assert base / 2 <= d <= base
    assert len(set(delays)) == len(delays)  # jittered, not lock-step
    assert b.next_delay(at_least_s=5.0) == 5.0  # a server RetryInfo wins
    b.reset()
    assert b.next_delay() <= 0.1


class Harness:
    """A StreamSender on a grpc_testing channel; the test plays the server."""

    def __init__(self, tmp_path: Path) -> None:
        self.channel = grpc_testing.channel(
            [ingest_pb2.DESCRIPTOR.services_by_name["IngestService"]],
            grpc_testing.strict_fake_time(0),
        )
        self.clock = FakeClock()
        self.spool = Spool(tmp_path / "w")
        self.stats = DeliveryStats()
        self.sender = StreamSender(
            self.channel, self.spool, self.stats, clock=self.clock,
            backoff=Backoff(initial_s=0.1, max_s=5.0, rng=random.Random(1)),
        )

    def add(self, n: int) -> None:
        for i in range(n):
            cols = metrics_pb2.MetricColumns(keys=[f"batch{i}"], key_index=[0], steps=[i],
                                             values=[0.5], wall_time_ns=[1])
            self.spool.append(cols.SerializeToString(), points=10)
        self.sender.wake()

    def take_stream(self) -> Any:
        _, rpc = self.channel.take_stream_stream(STREAM)
        return rpc

    @staticmethod
    def request(rpc: Any) -> ingest_pb2.StreamRequest:
        return ingest_pb2.StreamRequest.FromString(rpc.take_request())

    @staticmethod
    def respond(rpc: Any, **kind: Any) -> None:
        rpc.send_response(ingest_pb2.StreamResponse(**kind))

    def close(self) -> None:
        self.sender.stop()
        self.spool.close()


def test_reconnect_resends_only_after_committed_seq(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.add(3)
    h.sender.attach(ingest_pb2.Open(run_id="r", writer_id="w", rank=1, attempt=2))
    try:
        rpc = h.take_stream()
        first = h.request(rpc)
        assert first.open.writer_id == "w" and first.open.rank == 1 and first.open.attempt == 2
        h.respond(rpc, opened=ingest_pb2.Opened(committed_seq=0))
        assert [h.request(rpc).batch.seq for _ in range(3)] == [1, 2, 3]
        h.respond(rpc, ack=ingest_pb2.Ack(committed_through_seq=1))
        # The server dies after committing seq 2 but before acking it.
        rpc.terminate((), grpc.StatusCode.UNAVAILABLE, "server restarting")
        rpc2 = h.take_stream()
        assert h.request(rpc2).WhichOneof("kind") == "open"
        assert h.clock.sleeps and 0.05 <= h.clock.sleeps[0] <= 0.1
        h.respond(rpc2, opened=ingest_pb2.Opened(committed_seq=2))
        again = h.request(rpc2)
        assert again.batch.seq == 3  # not 1 or 2: never duplicated
        assert list(again.batch.columns.keys) == ["batch2"]  # the stored payload, intact
        h.respond(rpc2, ack=ingest_pb2.Ack(committed_through_seq=3))
        deadline = time.monotonic() + 5
        while h.spool.pending_batches and time.monotonic() < deadline:
            time.sleep(0.01)
        assert h.spool.pending_batches == 0
        assert h.spool.counters.trimmed_points == 30 and h.stats.reconnects == 1
    finally:
        h.close()


def test_backoff_grows_while_the_server_stays_down_then_resets(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.add(1)
    h.sender.attach(ingest_pb2.Open(run_id="r", writer_id="w"))
    try:
        for _ in range(5):
            rpc = h.take_stream()
            h.request(rpc)
            rpc.terminate((), grpc.StatusCode.UNAVAILABLE, "connection refused")
        rpc = h.take_stream()
        h.request(rpc)
        sleeps = list(h.clock.sleeps)
        assert len(sleeps) == 5
        for d, base in zip(sleeps, [0.1, 0.2, 0.4, 0.8, 1.6], strict=True):
            assert base / 2 <= d <= base
        h.respond(rpc, opened=ingest_pb2.Opened(committed_seq=0))
        assert h.request(rpc).batch.seq == 1
        rpc.terminate((), grpc.StatusCode.UNAVAILABLE, "again")
        rpc = h.take_stream()
        h.request(rpc)
        assert h.clock.sleeps[-1] <= 0.1  # progress reset the back-off
        h.respond(rpc, opened=ingest_pb2.Opened(committed_seq=1))
    finally:
        h.close()


def test_slow_down_pauses_sending_until_retry_after(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.add(1)
    h.sender.attach(ingest_pb2.Open(run_id="r", writer_id="w"))
    try:
        rpc = h.take_stream()
        h.request(rpc)
        h.respond(rpc, opened=ingest_pb2.Opened(committed_seq=0))
        assert h.request(rpc).batch.seq == 1
        h.respond(rpc, slow_down=ingest_pb2.SlowDown(
            retry_after=duration_pb2.Duration(seconds=5)))
        deadline = time.monotonic() + 5
        while h.stats.slow_downs == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        h.add(1)
        got: list[ingest_pb2.StreamRequest] = []
        t = threading.Thread(target=lambda: got.append(h.request(rpc)), daemon=True)
        t.start()
        t.join(0.4)
        assert not got, "sent during the SlowDown pause"
        h.clock.advance(5.1)
        t.join(5)
        assert got and got[0].batch.seq == 2
    finally:
        h.close()


def test_fatal_status_stops_and_keeps_the_spool(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.add(2)
    h.sender.attach(ingest_pb2.Open(run_id="r", writer_id="w"))
    try:
        rpc = h.take_stream()
        h.request(rpc)
        rpc.terminate((), grpc.StatusCode.NOT_FOUND, "run not found")
        assert h.sender.finished.wait(5)
        assert h.sender.fatal is not None and h.stats.state == "failed"
        assert h.spool.pending_batches == 2 and not h.clock.sleeps
    finally:
        h.close()
