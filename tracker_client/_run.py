"""The training-script API: ``init()`` returns a ``Run``; ``run.log()`` never blocks."""

from __future__ import annotations

import atexit
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
import numpy as np
from google.protobuf import struct_pb2

from tracker_client import _env
from tracker_client._sender import DeliveryStats, Sender, SenderOptions
from tracker_client.pb import experiments_pb2, experiments_pb2_grpc, ingest_pb2

_CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.keepalive_time_ms", 30_000),
]


@dataclass(frozen=True)
class DeliveryReport:
    """What ``flush``/``close`` could not make durable within the timeout."""

    durable: bool
    unacked_batches: int
    unacked_points: int
    oldest_unacked_age_s: float | None


class Run:
    """One writer attached to a run. Create it with :func:`tracker_client.init`."""

    def __init__(
        self,
        channel: grpc.Channel,
        run: experiments_pb2.Run,
        rank: int,
        options: SenderOptions,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._channel = channel
        self.info = run
        self.run_id = run.run_id
        self.rank = rank
        self.writer_id = f"{socket.gethostname()}:{os.getpid()}:{rank}:{uuid.uuid4().hex[:8]}"
        self._step = -1
        self._closed = False
        self._sender = Sender(
            channel,
            ingest_pb2.Open(run_id=run.run_id, writer_id=self.writer_id, rank=rank,
                            attempt=run.attempt),
            options,
            metadata,
        )
        self._records = self._sender.records
        self._sender.start()
        atexit.register(self._atexit)

    # -- logging -----------------------------------------------------------------------

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record scalar metrics at ``step`` (auto-incremented when omitted).

        Returns immediately: the points are batched and sent by a background thread.
        Values may be Python numbers, numpy scalars or 0-d arrays.
        """
        if step is None:
            step = self._step + 1
        self._step = step
        self._records.append((dict(metrics), step, time.time_ns()))
        self._sender.stats.points_logged += len(metrics)
        self._sender.wake()

    def log_series(self, key: str, steps: Any, values: Any) -> None:
        """Record a whole series (numpy arrays or sequences) in one call."""
        s = np.ascontiguousarray(steps, dtype=np.int64)
        v = np.ascontiguousarray(values, dtype=np.float64)
        if s.shape != v.shape or s.ndim != 1:
            raise ValueError(f"steps and values must be 1-d of one length ({s.shape} vs {v.shape})")
        wall = np.full(s.shape[0], time.time_ns(), dtype=np.int64)
        self._records.append((key, s, v, wall))
        self._sender.stats.points_logged += int(s.shape[0])
        if s.shape[0]:
            self._step = max(self._step, int(s.max()))
        self._sender.wake()

    # -- durability --------------------------------------------------------------------

    @property
    def stats(self) -> DeliveryStats:
        """Delivery counters: logged, acknowledged, dropped, reconnects, ..."""
        return self._sender.stats

    def _report(self, durable: bool) -> DeliveryReport:
        batches, points, oldest = self._sender.pending()
        return DeliveryReport(durable, batches, points, oldest)

    def flush(self, timeout: float = 30.0) -> DeliveryReport:
        """Wait (at most ``timeout`` seconds) until everything logged is committed."""
        return self._report(self._sender.flush(timeout))

    def close(self, timeout: float = 30.0) -> DeliveryReport:
        """Flush within ``timeout`` seconds and stop the background threads."""
        if self._closed:
            return self._report(True)
        self._closed = True
        atexit.unregister(self._atexit)
        durable = self._sender.close(timeout)
        report = self._report(durable)
        self._channel.close()
        return report

    def _atexit(self) -> None:
        self.close(timeout=float(os.environ.get("TRACKER_EXIT_TIMEOUT_S", "10")))

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def init(
    experiment: str | None = None,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    run_key: str | None = None,
    resume: bool = False,
    server: str | None = None,
    api_key: str | None = None,
    seed: int | None = None,
    owner: str = "",
    options: SenderOptions | None = None,
    timeout: float = 10.0,
) -> Run:
    """Attach to (or create) a run and return a :class:`Run` that logs to it.

    ``experiment`` is created when missing. With ``run_key`` (default: derived from
    TORCHELASTIC_RUN_ID / SLURM_JOB_ID), every process of a job attaches to one run.
    """
    address = _env.server_address(server)
    key = _env.api_key(api_key)
    metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {key}"),) if key else ()
    channel = grpc.insecure_channel(address, options=_CHANNEL_OPTIONS)
    stub = experiments_pb2_grpc.ExperimentServiceStub(channel)
    exp_id = _ensure_experiment(stub, _env.experiment_name(experiment), owner, metadata, timeout)
    req = experiments_pb2.CreateRunRequest(
        experiment_id=exp_id,
        name=name or "",
        run_key=run_key or _env.default_run_key() or "",
        params={k: str(v) for k, v in (config or {}).items()},
        tags=dict(tags or {}),
        resume=resume,
        slurm_job_id=os.environ.get("SLURM_JOB_ID", ""),
        metadata=struct_pb2.Struct(),
    )
    if seed is not None:
        req.seed = seed
    resp = stub.CreateRun(req, timeout=timeout, metadata=metadata, wait_for_ready=True)
    return Run(channel, resp.run, _env.rank(), options or SenderOptions(), metadata)


def _ensure_experiment(
    stub: experiments_pb2_grpc.ExperimentServiceStub,
    name: str,
    owner: str,
    metadata: tuple[tuple[str, str], ...],
    timeout: float,
) -> str:
    resp = stub.CreateExperiment(
        experiments_pb2.CreateExperimentRequest(name=name, owner=owner, get_if_exists=True),
        timeout=timeout, metadata=metadata, wait_for_ready=True,
    )
    return str(resp.experiment.experiment_id)
