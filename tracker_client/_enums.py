"""Lower-case labels of the wire enums (``running``, ``archived``), derived from the
generated descriptors, so a value added to a proto enum needs no hand-kept copy here."""

from __future__ import annotations

import re
from typing import TypeAlias

from google.protobuf.descriptor import EnumDescriptor

from tracker_proto.v1 import experiments_pb2, query_pb2


def _prefix(descriptor: EnumDescriptor) -> str:
    # buf's ENUM_VALUE_PREFIX rule: RunStatus values are named RUN_STATUS_*.
    return re.sub(r"(?<!^)(?=[A-Z])", "_", descriptor.name).upper() + "_"


def labels(descriptor: EnumDescriptor) -> dict[str, int]:
    """``{label: number}`` of an enum, without its zero (UNSPECIFIED) value."""
    prefix = _prefix(descriptor)
    return {v.name.removeprefix(prefix).lower(): v.number
            for v in descriptor.values if v.number != 0}


def names(descriptor: EnumDescriptor) -> dict[int, str]:
    """``{number: label}``: the inverse of :func:`labels`."""
    return {number: label for label, number in labels(descriptor).items()}


RunStatus: TypeAlias = experiments_pb2.RunStatus.ValueType
ExperimentStatus: TypeAlias = experiments_pb2.ExperimentStatus.ValueType

RUN_STATUS: dict[str, RunStatus] = {
    k: RunStatus(v) for k, v in labels(experiments_pb2.RunStatus.DESCRIPTOR).items()}
"""``running``, ``finished``, ``failed``, ``killed`` -> tracker.v1.RunStatus."""
RUN_STATUS_NAME: dict[int, str] = names(experiments_pb2.RunStatus.DESCRIPTOR)
EXPERIMENT_STATUS: dict[str, ExperimentStatus] = {
    k: ExperimentStatus(v)
    for k, v in labels(experiments_pb2.ExperimentStatus.DESCRIPTOR).items()}
"""``created``, ``active``, ``archived`` -> tracker.v1.ExperimentStatus."""
EXPERIMENT_STATUS_NAME: dict[int, str] = names(experiments_pb2.ExperimentStatus.DESCRIPTOR)
FINAL_RUN_STATUS: dict[str, RunStatus] = {k: v for k, v in RUN_STATUS.items() if k != "running"}
"""What a run may be finished with."""

SummaryField: TypeAlias = query_pb2.SummaryField.ValueType
RankAggregation: TypeAlias = query_pb2.RankAggregation.ValueType

SUMMARY_FIELD: dict[str, SummaryField] = {
    k: SummaryField(v) for k, v in labels(query_pb2.SummaryField.DESCRIPTOR).items()}
"""``last``, ``min``, ``max`` -> tracker.v1.SummaryField."""
RANK_AGGREGATION: dict[str, RankAggregation] = {
    k: RankAggregation(v) for k, v in labels(query_pb2.RankAggregation.DESCRIPTOR).items()}
"""``per_rank``, ``mean``, ``min``, ``max`` -> tracker.v1.RankAggregation."""
