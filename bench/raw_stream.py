"""Raw stream writers: ``IngestService.Stream`` driven directly, without the client library.

This is the ``--transport raw`` of ``bench ingest``: no client library, only the wire
protocol (Open, numbered Batches, Acks), so it measures the server with the least
client CPU, and it times every batch from hand-over to gRPC until the Ack that covers
it (``ack_p50_ms``/``ack_p99_ms``). A window of unacknowledged batches per stream
bounds what is in flight, like the client's ``max_inflight_bytes``.

Requests are serialized with numpy (``tracker_client._packed``, byte for byte what
protobuf writes) and handed to gRPC as bytes, as the client library does: building
the message through protobuf's repeated fields cost ~210 ns per point, which on a
shared box is CPU the server under test does not get.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from bench.workload import StreamPoints, Workload
from tracker_client._columns import encode_batch_request, encode_open_request
from tracker_client._packed import encode_columns

if TYPE_CHECKING:
    from tracker_proto.v1 import ingest_pb2

    StreamCall = grpc.aio.StreamStreamCall[bytes, ingest_pb2.StreamResponse]
    StreamCallable = grpc.aio.StreamStreamMultiCallable[bytes, ingest_pb2.StreamResponse]

STREAM_METHOD = "/tracker.v1.IngestService/Stream"

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
]


@dataclass
class StreamResult:
    """What one stream did."""

    run_id: str
    points_sent: int = 0
    points_acked: int = 0
    batches_sent: int = 0
    batches_rejected: int = 0
    slow_downs: int = 0
    ack_ms: list[float] = field(default_factory=list)
    t_first_send: float = 0.0
    t_last_ack: float = 0.0
    error: str = ""


@dataclass(frozen=True)
class Pace:
    """When a stream stops and how fast it sends."""

    steps: int | None
    """Steps to send (None: until ``deadline``)."""
    deadline: float | None
    """time.monotonic() after which no batch is started."""
    points_per_s: float | None
    """Per-stream send rate (None: as fast as the window allows)."""
    window_batches: int
    """Most batches sent but not yet acknowledged."""


async def create_run(channel: grpc.aio.Channel, experiment: str, run_key: str) -> tuple[str, int]:
    """Create (or get) the experiment and a run; return (run_id, attempt).

    UNAVAILABLE and ABORTED are retried with back-off, as a client library would.
    """
    from tracker_proto.v1 import experiments_pb2, experiments_pb2_grpc

    stub = experiments_pb2_grpc.ExperimentServiceStub(channel)
    delay = 0.05
    for attempt in range(8):
        try:
            exp = await stub.CreateExperiment(
                experiments_pb2.CreateExperimentRequest(name=experiment, get_if_exists=True),
                timeout=30, wait_for_ready=True,
            )
            resp = await stub.CreateRun(
                experiments_pb2.CreateRunRequest(
                    experiment_id=exp.experiment.experiment_id, name=run_key, run_key=run_key
                ),
                timeout=30, wait_for_ready=True,
            )
            return str(resp.run.run_id), int(resp.run.attempt)
        except grpc.aio.AioRpcError as exc:
            retryable = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED}
            if exc.code() not in retryable or attempt == 7:
                raise
            await asyncio.sleep(delay * (1 + random.random()))
            delay *= 2
    raise AssertionError("unreachable")


class RawStream:
    """One writer: opens the stream, then sends the workload of one stream index."""

    def __init__(self, channel: grpc.aio.Channel, run_id: str, attempt: int,
                 workload: Workload, stream: int) -> None:
        from tracker_proto.v1 import ingest_pb2

        self.stream: StreamCallable = channel.stream_stream(
            STREAM_METHOD,
            request_serializer=None,  # requests are pre-serialized bytes
            response_deserializer=ingest_pb2.StreamResponse.FromString,
        )
        self.run_id = run_id
        self.attempt = attempt
        self.workload = workload
        self.points = StreamPoints(workload, stream)
        self.writer_id = f"{socket.gethostname()}:{os.getpid()}:bench:{stream}"
        self.result = StreamResult(run_id)
        self._call: StreamCall | None = None

    @property
    def call(self) -> StreamCall:
        """The open stream (after :meth:`open`)."""
        if self._call is None:
            raise RuntimeError("stream not opened")
        return self._call

    async def open(self) -> None:
        """Send Open and wait for Opened."""
        from tracker_proto.v1 import ingest_pb2

        self._call = self.stream()
        await self.call.write(encode_open_request(ingest_pb2.Open(
            run_id=self.run_id, writer_id=self.writer_id, rank=0, attempt=self.attempt)))
        first = await self.call.read()
        # read() answers grpc.aio.EOF or a response; the stubs type that as object.
        if not isinstance(first, ingest_pb2.StreamResponse) or (
                first.WhichOneof("kind") != "opened"):
            raise RuntimeError(f"expected Opened, got {first!r}")

    async def run(self, pace: Pace, t0: float, on_acked: Callable[[int], None],
                  stagger_s: float = 0.0) -> StreamResult:
        """Send until ``pace`` says stop, then wait for the last ack."""
        res = self.result
        window = asyncio.Semaphore(pace.window_batches)
        sent_at: dict[int, tuple[float, int]] = {}
        reader = asyncio.create_task(self._read(sent_at, window, on_acked))
        try:
            await self._write(pace, t0 + stagger_s, sent_at, window)
            await self.call.done_writing()
            await reader
        except grpc.aio.AioRpcError as exc:
            res.error = f"{exc.code().name}: {exc.details()}"
            reader.cancel()
        return res

    async def _write(self, pace: Pace, t0: float, sent_at: dict[int, tuple[float, int]],
                     window: asyncio.Semaphore) -> None:
        res = self.result
        keys = self.workload.key_names()
        spb = self.workload.steps_per_batch
        step, seq = 0, 0
        if t0 > time.monotonic():
            await asyncio.sleep(t0 - time.monotonic())
        while True:
            if pace.steps is not None and step >= pace.steps:
                break
            now = time.monotonic()
            if pace.deadline is not None and now >= pace.deadline:
                break
            nsteps = spb if pace.steps is None else min(spb, pace.steps - step)
            if pace.points_per_s:
                due = t0 + res.points_sent / pace.points_per_s
                if due > now:
                    await asyncio.sleep(due - now)
            await window.acquire()
            cols = self.points.batch(step, nsteps)
            seq += 1
            msg = encode_batch_request(seq, encode_columns(
                keys, cols.key_index, cols.steps, cols.values, cols.wall_ns))
            t = time.monotonic()
            if not res.t_first_send:
                res.t_first_send = t
            sent_at[seq] = (t, cols.n)
            await self.call.write(msg)
            res.points_sent += cols.n
            res.batches_sent += 1
            step += nsteps

    async def _read(self, sent_at: dict[int, tuple[float, int]], window: asyncio.Semaphore,
                    on_acked: Callable[[int], None]) -> None:
        from tracker_proto.v1 import ingest_pb2

        res = self.result
        acked = 0
        while True:
            resp = await self.call.read()
            if not isinstance(resp, ingest_pb2.StreamResponse):  # grpc.aio.EOF
                break
            kind = resp.WhichOneof("kind")
            if kind == "ack":
                now = time.monotonic()
                through = resp.ack.committed_through_seq
                for seq in range(acked + 1, through + 1):
                    sent = sent_at.pop(seq, None)
                    if sent is None:
                        continue
                    res.ack_ms.append((now - sent[0]) * 1000)
                    res.points_acked += sent[1]
                    window.release()
                acked = max(acked, through)
                res.t_last_ack = now
                on_acked(res.points_acked)
            elif kind == "rejected":
                res.batches_rejected += 1
                res.error = f"batch {resp.rejected.seq} rejected: {resp.rejected.message}"
            elif kind == "slow_down":
                res.slow_downs += 1


async def run_streams(address: str, experiment: str, run_keys: list[str], streams: list[int],
                      workload: Workload, pace_of: Callable[[float], Pace],
                      wait_go: Callable[[], float], report: Callable[[int, int], None],
                      stagger_s: float = 0.0) -> list[StreamResult]:
    """Open every stream of this process, wait for the start signal, run them all.

    ``wait_go`` blocks until the parent says go and returns the common start time
    (time.monotonic); ``report(i, acked_points)`` publishes progress of stream i.
    """
    # One channel (HTTP/2 connection) per stream, like one trainer process per rank.
    channels = [grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
                for _ in streams]
    try:
        writers = []
        for ch, key, idx in zip(channels, run_keys, streams, strict=True):
            run_id, attempt = await create_run(ch, experiment, key)
            w = RawStream(ch, run_id, attempt, workload, idx)
            await w.open()
            writers.append(w)
        t0 = await asyncio.get_running_loop().run_in_executor(None, wait_go)
        pace = pace_of(t0)
        rnd = random.Random(streams[0] if streams else 0)
        tasks = [
            w.run(pace, t0, functools.partial(report, i),
                  rnd.uniform(0, stagger_s) if stagger_s else 0.0)
            for i, w in zip(streams, writers, strict=True)
        ]
        return list(await asyncio.gather(*tasks))
    finally:
        for ch in channels:
            await ch.close()
