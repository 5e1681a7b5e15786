"""A raw-protocol writer for process-level tests: numbered batches over a stream that it
reconnects (new channel, so possibly another worker process) whenever it likes or must,
resending from the committed seq the server reports, like the real client."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import numpy as np

from tests.support import batch_req, columns, open_req
from tracker_proto.v1 import ingest_pb2, ingest_pb2_grpc

KEYS = 5


def writer_batch(rank: int, seq: int, per: int) -> ingest_pb2.StreamRequest:
    """Batch ``seq`` of a writer: ``per`` points, steps unique per (rank, key)."""
    idx = np.arange(per)
    step = (seq - 1) * (per // KEYS) + idx // KEYS
    return batch_req(seq, columns([f"k{i}" for i in range(KEYS)], idx % KEYS, step,
                                  step * 0.5 + rank))


@dataclass
class Writer:
    """One writer (``w<rank>``) of ``run_id`` sending ``batches`` batches to ``address``."""

    address: str
    run_id: str
    rank: int
    batches: int
    per: int = 500
    reconnect_every: int = 0
    """Leave the stream after this many batches (alternately hanging up abruptly and
    half-closing) and open a new one; 0: only when the stream fails."""
    acked: int = 0
    """Highest seq acknowledged by any server."""
    acks: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    streams: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def writer_id(self) -> str:
        return f"w{self.rank}"

    def run(self, deadline_s: float = 90) -> None:
        """Stream until every batch is acknowledged (or the deadline)."""
        end = time.monotonic() + deadline_s
        while self.acked < self.batches and time.monotonic() < end and not self.stop.is_set():
            self.streams += 1
            try:
                self._one_stream(abrupt=self.streams % 2 == 0)
            except grpc.RpcError as exc:
                self.errors.append(f"{exc.code().name}: {exc.details()}")
                time.sleep(0.05)

    def _one_stream(self, abrupt: bool) -> None:
        opened = threading.Event()
        start = [0]
        leave = threading.Event()

        def requests() -> Iterator[ingest_pb2.StreamRequest]:
            yield open_req(self.run_id, self.writer_id, rank=self.rank)
            opened.wait(10)
            last = self.batches
            if self.reconnect_every:
                last = min(last, start[0] + self.reconnect_every)
            for seq in range(start[0] + 1, last + 1):
                if leave.is_set():
                    return
                yield writer_batch(self.rank, seq, self.per)
            if abrupt and last < self.batches:
                leave.wait(0.05)  # some acks in flight, then hang up without waiting

        # A connection of its own (not grpc's shared subchannel), as a separate client
        # process would have: the kernel may hand it to any worker.
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(self.address, options=options) as channel:
            call = ingest_pb2_grpc.IngestServiceStub(channel).Stream(requests(), timeout=60)
            try:
                for resp in call:
                    kind = resp.WhichOneof("kind")
                    if kind == "opened":
                        start[0] = resp.opened.committed_seq
                        self._ack(start[0])
                        opened.set()
                    elif kind == "ack":
                        self._ack(resp.ack.committed_through_seq)
                    if abrupt and self.reconnect_every and self.acked >= min(
                            self.batches, start[0] + self.reconnect_every // 2):
                        leave.set()
                        call.cancel()
                        return
            finally:
                opened.set()

    def _ack(self, seq: int) -> None:
        self.acks.append(seq)
        self.acked = max(self.acked, seq)
