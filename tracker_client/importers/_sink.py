"""Write one imported run into tracker, so that importing again sends nothing twice.

A source run becomes a tracker run with a deterministic run key (``CreateRun`` is
idempotent by key). Its points are sent by one writer whose id derives from that key,
in a fixed order, in batches numbered 1, 2, ... on the ingest stream. Before sending,
the sink reads how many points the run already holds (the summaries' counts, written in
the same transaction as the writer's committed seq) and sends only the points after
them, numbering on from the committed seq: a second import of an unchanged source sends
nothing, and a source that grew (a run still logging) sends only its new points, as
long as new points come after the old ones in that order (later wall times). Imported
runs must not be written to by anything else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from google.protobuf import struct_pb2, timestamp_pb2

from tracker_client._enums import FINAL_RUN_STATUS
from tracker_proto.v1 import experiments_pb2 as ex
from tracker_proto.v1 import (
    experiments_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    metrics_pb2,
    query_pb2,
    query_pb2_grpc,
)

BATCH_POINTS = 10_000
"""Points per batch: large enough that per-message costs vanish, far below the limits."""


class ImportFailed(RuntimeError):
    """The server refused imported data (it is not retried)."""


@dataclass
class Points:
    """Points of one run in import order: key table plus parallel columns."""

    keys: list[str]
    key_index: npt.NDArray[np.uint32]
    steps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    wall_ns: npt.NDArray[np.int64]

    @property
    def n(self) -> int:
        """Number of points."""
        return int(self.steps.shape[0])

    @classmethod
    def empty(cls) -> Points:
        """No points."""
        return cls([], np.empty(0, np.uint32), np.empty(0, np.int64), np.empty(0, np.float64),
                   np.empty(0, np.int64))

    def batches(self, start: int, size: int) -> Iterator[metrics_pb2.MetricColumns]:
        """Columns of points ``start:`` cut every ``size`` points, each with the key
        table of the keys it uses."""
        for lo in range(start, self.n, size):
            sl = slice(lo, min(lo + size, self.n))
            used, local = np.unique(self.key_index[sl], return_inverse=True)
            cols = metrics_pb2.MetricColumns(keys=[self.keys[i] for i in used.tolist()])
            cols.key_index.extend(local.astype(np.uint32).tolist())
            cols.steps.extend(self.steps[sl].tolist())
            cols.values.extend(self.values[sl].tolist())
            cols.wall_time_ns.extend(self.wall_ns[sl].tolist())
            yield cols


@dataclass
class SourceRun:
    """A run read from another system, ready to be written."""

    experiment: str
    run_key: str
    name: str
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    status: str | None = None
    """``finished``, ``failed`` or ``killed``; None while the source run is still going."""
    ended_at_ns: int | None = None
    points: Points = field(default_factory=Points.empty)


@dataclass(frozen=True)
class RunOutcome:
    """What importing one run did."""

    run_id: str
    run_key: str
    created: bool
    """The run did not exist before."""
    points_sent: int
    points_skipped: int
    """Points already stored by an earlier import."""
    status_set: bool
    """The status was changed by this import."""
    warning: str = ""

    @property
    def changed(self) -> bool:
        """Whether this import changed anything."""
        return self.created or self.points_sent > 0 or self.status_set


class Sink:
    """Writes :class:`SourceRun` objects through a channel to a tracker server (the
    caller owns the channel)."""

    def __init__(self, channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] = (),
                 timeout_s: float = 60.0, batch_points: int = BATCH_POINTS) -> None:
        self._md = metadata or None
        self._timeout = timeout_s
        self._batch = batch_points
        self._exps = experiments_pb2_grpc.ExperimentServiceStub(channel)
        self._ingest = ingest_pb2_grpc.IngestServiceStub(channel)
        self._query = query_pb2_grpc.MetricsQueryServiceStub(channel)
        self._experiment_ids: dict[str, str] = {}

    def _call(self, method: Callable[..., Any], request: Any) -> Any:
        return method(request, timeout=self._timeout, metadata=self._md)

    def _experiment_id(self, name: str) -> str:
        if name not in self._experiment_ids:
            exp = self._call(self._exps.CreateExperiment, ex.CreateExperimentRequest(
                name=name, get_if_exists=True)).experiment
            self._experiment_ids[name] = exp.experiment_id
        return self._experiment_ids[name]

    def write(self, src: SourceRun, on_points: Callable[[int], None] | None = None
              ) -> RunOutcome:
        """Create or find the run, send the points it lacks, set a final status."""
        struct = struct_pb2.Struct()
        struct.update(src.metadata)
        resp = self._call(self._exps.CreateRun, ex.CreateRunRequest(
            experiment_id=self._experiment_id(src.experiment), name=src.name,
            run_key=src.run_key, params=src.params, tags=src.tags, metadata=struct))
        run = resp.run
        sent, skipped = self._send(run, src.points, on_points)
        status_set, warning = self._finish(run, src)
        return RunOutcome(run_id=run.run_id, run_key=src.run_key, created=resp.created,
                          points_sent=sent, points_skipped=skipped, status_set=status_set,
                          warning=warning)

    def _stored_points(self, run_id: str) -> int:
        keys = self._call(self._query.ListMetricKeys,
                          query_pb2.ListMetricKeysRequest(run_id=run_id)).keys
        return sum(int(k.summary.count) for k in keys)

    def _send(self, run: ex.Run, points: Points, on_points: Callable[[int], None] | None
              ) -> tuple[int, int]:
        stored = min(self._stored_points(run.run_id), points.n)
        if on_points is not None and stored:
            on_points(stored)
        if stored >= points.n:
            return 0, stored
        opened = _Gate()

        def requests() -> Iterator[ingest_pb2.StreamRequest]:
            yield ingest_pb2.StreamRequest(open=ingest_pb2.Open(
                run_id=run.run_id, writer_id=f"import:{run.run_key}"[:200], rank=0,
                attempt=run.attempt))
            seq = opened.wait()
            for cols in points.batches(stored, self._batch):
                if opened.failed:
                    return
                seq += 1
                yield ingest_pb2.StreamRequest(batch=ingest_pb2.Batch(seq=seq, columns=cols))
                if on_points is not None:
                    on_points(len(cols.steps))

        # The server ends the stream once the client has half-closed and every batch
        # is acknowledged.
        call = self._ingest.Stream(requests(), metadata=self._md)
        try:
            for msg in call:
                kind = msg.WhichOneof("kind")
                if kind == "opened":
                    opened.open(int(msg.opened.committed_seq))
                elif kind == "rejected":
                    raise ImportFailed(f"run {run.run_key}: batch {msg.rejected.seq} "
                                       f"rejected: {msg.rejected.message}")
        finally:
            opened.fail()  # let the request thread go whatever happened
            call.cancel()  # no-op after a normal end
        return points.n - stored, stored

    def _finish(self, run: ex.Run, src: SourceRun) -> tuple[bool, str]:
        if src.status is None or src.status not in FINAL_RUN_STATUS:
            return False, ""
        target = FINAL_RUN_STATUS[src.status]
        if run.status == target:
            return False, ""
        req = ex.FinishRunRequest(run_id=run.run_id, status=target)
        if src.ended_at_ns:
            req.ended_at.CopyFrom(_timestamp(src.ended_at_ns))
        try:
            self._call(self._exps.FinishRun, req)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                return False, f"status not changed: {exc.details()}"
            raise
        return True, ""


class _Gate:
    """Holds the request thread until ``Opened`` told where to number from."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._seq = 0
        self.failed = False

    def open(self, seq: int) -> None:
        """Release the request thread, numbering after ``seq``."""
        self._seq = seq
        self._event.set()

    def fail(self) -> None:
        """Release the request thread and stop it sending."""
        if not self._event.is_set():
            self.failed = True
            self._event.set()

    def wait(self) -> int:
        """The committed seq, once known."""
        self._event.wait()
        return self._seq


def _timestamp(ns: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    return ts
