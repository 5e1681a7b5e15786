"""Proto <-> domain conversion (wire types stay at the edge)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from tracker_proto.v1 import experiments_pb2, metrics_pb2
from tracker_server.domain.points import RawColumns
from tracker_server.domain.runs import Experiment, Run


def columns_from_proto(cols: metrics_pb2.MetricColumns) -> RawColumns:
    """Packed repeated fields -> numpy (no per-point Python work with upb)."""
    return RawColumns(
        keys=list(cols.keys),
        key_index=np.array(cols.key_index, dtype=np.uint32),
        steps=np.array(cols.steps, dtype=np.int64),
        values=np.array(cols.values, dtype=np.float64),
        wall_ns=np.array(cols.wall_time_ns, dtype=np.int64),
    )


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """datetime -> Timestamp (None stays unset)."""
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def optional_time(msg: Any, field: str) -> datetime | None:
    """An optional Timestamp field of ``msg`` as an aware UTC datetime, None when unset."""
    if not msg.HasField(field):
        return None
    value: datetime = getattr(msg, field).ToDatetime(tzinfo=UTC)
    return value


def optional(msg: Any, field: str) -> Any:
    """An optional (``optional`` in the proto) scalar field of ``msg``, None when unset."""
    return getattr(msg, field) if msg.HasField(field) else None


def struct_to_dict(value: struct_pb2.Struct) -> dict[str, Any]:
    """google.protobuf.Struct -> plain dict."""
    return json_format.MessageToDict(value)


def dict_to_struct(value: dict[str, Any]) -> struct_pb2.Struct:
    """Plain dict -> google.protobuf.Struct."""
    out = struct_pb2.Struct()
    out.update(value)
    return out


def experiment_to_proto(exp: Experiment) -> experiments_pb2.Experiment:
    """Domain experiment -> wire."""
    return experiments_pb2.Experiment(
        experiment_id=str(exp.experiment_id),
        name=exp.name,
        owner=exp.owner,
        description=exp.description,
        status=int(exp.status),  # type: ignore[arg-type]
        created_at=timestamp(exp.created_at),
    )


def run_to_proto(run: Run) -> experiments_pb2.Run:
    """Domain run -> wire."""
    msg = experiments_pb2.Run(
        run_id=str(run.run_id),
        experiment_id=str(run.experiment_id),
        name=run.name,
        run_key=run.run_key,
        status=int(run.status),  # type: ignore[arg-type]
        slurm_job_id=run.slurm_job_id,
        metadata=dict_to_struct(run.metadata),
        params=run.params,
        tags=run.tags,
        created_at=timestamp(run.created_at),
        ended_at=timestamp(run.ended_at),
        attempt=run.attempt,
    )
    if run.seed is not None:
        msg.seed = run.seed
    return msg
