"""Proto <-> domain conversion (wire types stay at the edge)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from google.protobuf import struct_pb2, timestamp_pb2

from tracker_proto.v1 import experiments_pb2, metrics_pb2
from tracker_server.domain.errors import invalid
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


TIMESTAMP_MIN_S = -62_135_596_800
"""0001-01-01T00:00:00Z, the earliest Timestamp (and datetime) there is."""
TIMESTAMP_MAX_S = 253_402_300_799
"""9999-12-31T23:59:59Z, the latest."""


def optional_time(msg: Any, field: str) -> datetime | None:
    """An optional Timestamp field of ``msg`` as an aware UTC datetime, None when unset;
    INVALID_ARGUMENT naming the field when it is outside the Timestamp range
    (0001-01-01 to 9999-12-31, nanos 0..999,999,999)."""
    if not msg.HasField(field):
        return None
    ts = getattr(msg, field)
    if not (TIMESTAMP_MIN_S <= ts.seconds <= TIMESTAMP_MAX_S and 0 <= ts.nanos < 10**9):
        raise invalid(
            f"{field} is out of range (seconds={ts.seconds}, nanos={ts.nanos}): a Timestamp "
            "lies in 0001-01-01..9999-12-31 with nanos in 0..999999999",
            [(field, "out of range")],
        )
    value: datetime = ts.ToDatetime(tzinfo=UTC)
    return value


def optional(msg: Any, field: str) -> Any:
    """An optional (``optional`` in the proto) scalar field of ``msg``, None when unset."""
    return getattr(msg, field) if msg.HasField(field) else None


def struct_to_dict(value: struct_pb2.Struct) -> dict[str, Any]:
    """google.protobuf.Struct -> plain dict; numbers stay floats, NaN and infinities
    included (the domain refuses those, naming the field; JSON cannot hold them)."""
    return {key: _value(v) for key, v in value.fields.items()}


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_value(v) for v in value.list_value.values]
    if kind is None or kind == "null_value":
        return None
    return getattr(value, kind)


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
        summary=run.summary,
        metric_goals=run.metric_goals,
        created_at=timestamp(run.created_at),
        ended_at=timestamp(run.ended_at),
        attempt=run.attempt,
    )
    if run.seed is not None:
        msg.seed = run.seed
    return msg
