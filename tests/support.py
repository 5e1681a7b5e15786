"""Test support: a real server in a background thread or a subprocess, and stubs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import grpc
import numpy as np

from tracker_proto.v1 import (
    experiments_pb2,
    experiments_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    metrics_pb2,
)
from tracker_server.config import Settings
from tracker_server.server import RunningServer, start_server
from tracker_server.storage.points_export import materialize_points


class ServerThread:
    """A real tracker server on 127.0.0.1:<free port>, with its own event loop thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = replace(settings, listen="127.0.0.1:0",
                                http_listen="127.0.0.1:0" if settings.http_listen else "")
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.running: RunningServer = self.call(start_server(self.settings))
        self.address = self.running.address
        port = self.running.http_port
        scheme = "https" if self.settings.tls_cert else "http"
        self.http_url = f"{scheme}://127.0.0.1:{port}" if port is not None else ""

    def call(self, coro: Any, timeout: float = 60) -> Any:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, grace_s: float = 2.0) -> None:
        """Graceful stop (flushes buffered points)."""
        try:
            self.call(self.running.stop(grace_s))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for subprocess servers that must keep their port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``tracker-server`` as a real process, for kill -9 / restart tests."""

    def __init__(self, database_url: str, port: int | None = None, **env: str) -> None:
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.database_url = database_url
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        env = {**os.environ, "DATABASE_URL": self.database_url,
               "TRACKER_LISTEN": self.address, "TRACKER_LOG_LEVEL": "warning",
               "TRACKER_HTTP_LISTEN": "", **self.env}
        self.proc = subprocess.Popen([sys.executable, "-m", "tracker_server"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_healthy(self.address, timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def signal_all(self, sig: int) -> None:
        """Send ``sig`` to the server and its worker processes (SIGSTOP/SIGCONT)."""
        import psutil

        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def wait_healthy(address: str, timeout: float) -> None:
    """Block until the gRPC health service answers SERVING."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while True:
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"server at {address} not healthy after {timeout}s")
            time.sleep(0.1)


class Api:
    """Blocking stubs on one channel."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(
            address, options=[("grpc.max_send_message_length", 64 << 20)]
        )
        self.experiments = experiments_pb2_grpc.ExperimentServiceStub(self.channel)
        self.ingest = ingest_pb2_grpc.IngestServiceStub(self.channel)

    def new_run(self, run_key: str = "", exp_name: str | None = None) -> str:
        exp = self.experiments.CreateExperiment(
            experiments_pb2.CreateExperimentRequest(
                name=exp_name or f"exp-{uuid.uuid4().hex[:8]}", get_if_exists=True
            )
        ).experiment
        run = self.experiments.CreateRun(
            experiments_pb2.CreateRunRequest(experiment_id=exp.experiment_id, run_key=run_key)
        ).run
        return str(run.run_id)

    def close(self) -> None:
        self.channel.close()


def columns(
    keys: list[str],
    key_index: Any,
    steps: Any,
    values: Any,
    wall: Any | None = None,
) -> metrics_pb2.MetricColumns:
    """Build packed columns from arrays."""
    steps = np.asarray(steps, dtype=np.int64)
    cols = metrics_pb2.MetricColumns(keys=keys)
    cols.key_index.extend(np.asarray(key_index, dtype=np.uint32).tolist())
    cols.steps.extend(steps.tolist())
    cols.values.extend(np.asarray(values, dtype=np.float64).tolist())
    cols.wall_time_ns.extend(
        (np.asarray(wall, dtype=np.int64) if wall is not None else steps * 1000).tolist()
    )
    return cols


def open_req(run_id: str, writer: str, rank: int = 0, attempt: int = 0) -> ingest_pb2.StreamRequest:
    return ingest_pb2.StreamRequest(
        open=ingest_pb2.Open(run_id=run_id, writer_id=writer, rank=rank, attempt=attempt)
    )


def batch_req(seq: int, cols: metrics_pb2.MetricColumns) -> ingest_pb2.StreamRequest:
    return ingest_pb2.StreamRequest(batch=ingest_pb2.Batch(seq=seq, columns=cols))


def run_stream(api: Api, requests: list[ingest_pb2.StreamRequest], timeout: float = 30) -> list[
    ingest_pb2.StreamResponse
]:
    """Send requests, half-close, and collect every response until the server ends."""
    return list(api.ingest.Stream(iter(requests), timeout=timeout))


def count_points(conninfo: str, run_id: str) -> int:
    import psycopg

    with psycopg.connect(conninfo) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(n), 0) FROM metric_chunks WHERE run_id = %s", (run_id,)
        ).fetchone()
        assert row is not None
        return int(row[0])


def iter_points(conninfo: str, run_id: str) -> Iterator[tuple[str, int, int, float, int]]:
    """(key, rank, step, value, wall_ns) of every stored point."""
    import psycopg

    with psycopg.connect(conninfo) as conn:
        materialize_points(conn, [run_id])
        yield from conn.execute(
            "SELECT key, rank, step, value, wall_ns FROM metric_points WHERE run_id = %s",
            (run_id,),
        )
