"""Client keepalive pings (the client library pings every 30 s, even between calls) do
not get an idle training job's connection closed by the server."""

from __future__ import annotations

import threading
import time

import grpc
import numpy as np

from tests.support import Api, ServerThread, batch_req, columns, open_req
from tracker_proto.v1 import ingest_pb2_grpc


def test_frequent_pings_on_an_idle_stream_keep_it_open(server: ServerThread, api: Api) -> None:
    run_id = api.new_run()
    channel = grpc.insecure_channel(server.address, options=[
        ("grpc.keepalive_time_ms", 200),  # far more often than the client's 30 s
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ])
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    go = threading.Event()

    def requests():  # type: ignore[no-untyped-def]
        yield open_req(run_id, "idle")
        go.wait(30)  # a slow training step: nothing to send for a while
        yield batch_req(1, columns(["loss"], [0], [1], np.array([0.5])))

    try:
        responses = stub.Stream(requests(), timeout=60)
        assert next(responses).WhichOneof("kind") == "opened"
        time.sleep(4)  # ~20 pings with no data in between
        go.set()
        rest = list(responses)
        assert rest[-1].ack.committed_through_seq == 1
    finally:
        channel.close()
