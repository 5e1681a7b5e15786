"""Domain -> wire conversion for the query API (MetricsQueryService)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from tracker_proto.v1 import query_pb2
from tracker_server.domain.query_service import Ranking
from tracker_server.domain.series import Series
from tracker_server.domain.summaries import (
    Comparison,
    KeyInfo,
    MetricRow,
    MetricSummary,
    RankedRun,
)
from tracker_server.transport.convert import run_to_proto

DOWNSAMPLING = {
    query_pb2.DOWNSAMPLING_UNSPECIFIED: "minmax",
    query_pb2.DOWNSAMPLING_MINMAX: "minmax",
    query_pb2.DOWNSAMPLING_LTTB: "lttb",
    query_pb2.DOWNSAMPLING_NONE: "none",
}
AGGREGATION = {
    query_pb2.RANK_AGGREGATION_UNSPECIFIED: "per_rank",
    query_pb2.RANK_AGGREGATION_PER_RANK: "per_rank",
    query_pb2.RANK_AGGREGATION_MEAN: "mean",
    query_pb2.RANK_AGGREGATION_MIN: "min",
    query_pb2.RANK_AGGREGATION_MAX: "max",
}
AGGREGATION_ENUM = {
    "per_rank": query_pb2.RANK_AGGREGATION_PER_RANK,
    "mean": query_pb2.RANK_AGGREGATION_MEAN,
    "min": query_pb2.RANK_AGGREGATION_MIN,
    "max": query_pb2.RANK_AGGREGATION_MAX,
}
SUMMARY_FIELD = {
    query_pb2.SUMMARY_FIELD_UNSPECIFIED: "last",
    query_pb2.SUMMARY_FIELD_LAST: "last",
    query_pb2.SUMMARY_FIELD_MIN: "min",
    query_pb2.SUMMARY_FIELD_MAX: "max",
}


def enum_name(names: dict[Any, str], value: int) -> str:
    """The domain name of a wire enum value; the number itself as text when unknown (the
    domain then refuses it, naming the field)."""
    return names.get(value, str(value))


def summary_to_proto(s: MetricSummary) -> query_pb2.MetricSummary:
    """Domain summary -> wire (unset optionals stay unset)."""
    msg = query_pb2.MetricSummary(
        key=s.key,
        count=s.count,
        first_step=s.first_step,
        last_step=s.last_step,
        last_value=s.last_value,
        last_wall_time_ns=s.last_wall_ns,
        last_attempt=s.last_attempt,
    )
    if s.min_value is not None:
        msg.min_value = s.min_value
    if s.min_step is not None:
        msg.min_step = s.min_step
    if s.max_value is not None:
        msg.max_value = s.max_value
    if s.max_step is not None:
        msg.max_step = s.max_step
    return msg


def key_info_to_proto(info: KeyInfo) -> query_pb2.MetricKeyInfo:
    """Key of a run -> wire."""
    return query_pb2.MetricKeyInfo(summary=summary_to_proto(info.summary), ranks=info.ranks)


def series_to_proto(
    run_id: uuid.UUID, key: str, series: Series, aggregation: str
) -> query_pb2.MetricSeries:
    """Resolved series -> packed columns (bulk ``extend`` from numpy, no per-point work
    in Python beyond the list conversion)."""
    msg = query_pb2.MetricSeries(
        run_id=str(run_id),
        key=key,
        rank=series.rank,
        aggregation=AGGREGATION_ENUM[aggregation],
        total_points=series.total_points,
        downsampled=series.downsampled,
    )
    msg.steps.extend(series.steps.tolist())
    msg.values.extend(series.values.tolist())
    msg.wall_time_ns.extend(series.wall_ns.tolist())
    if series.low is not None and series.high is not None:
        msg.min_values.extend(series.low.tolist())
        msg.max_values.extend(series.high.tolist())
    return msg


PACKED_POINT_BYTES = 24
"""Bytes of one point in the packed form: three 8-byte columns."""
REPEATED_POINT_BYTES = 28
"""Most bytes of one point in the repeated form: a 10-byte varint step (sint64), an
8-byte double and a 10-byte varint wall time (a negative int64)."""
MESSAGE_OVERHEAD_BYTES = 64
"""Bound on the rest of an export message: the rank and the tag and length of each
column."""


def export_points_cap(max_message_bytes: int, packed: bool) -> int:
    """Most points of one export message that stay within ``max_message_bytes`` (the
    server's gRPC send limit): 16 MiB holds ~699,000 packed points, far above the
    100,000 a request may ask for, but the limit is a setting."""
    per_point = PACKED_POINT_BYTES if packed else REPEATED_POINT_BYTES
    return max(1, (max_message_bytes - MESSAGE_OVERHEAD_BYTES) // per_point)


def split_slice(series: Series, points: int) -> Iterator[Series]:
    """``series`` in consecutive pieces of at most ``points`` points (views, no copy)."""
    n = int(series.steps.shape[0])
    if n <= points:
        yield series
        return
    for i in range(0, n, points):
        j = i + points
        yield Series(series.rank, series.steps[i:j], series.values[i:j], series.wall_ns[i:j])


def slice_to_proto(series: Series, packed: bool = False) -> query_pb2.StreamMetricSeriesResponse:
    """One export slice -> wire: repeated fields, or (``packed``) little-endian byte
    columns, one memory copy per column and no per-point Python."""
    if packed:
        return query_pb2.StreamMetricSeriesResponse(
            rank=series.rank,
            packed_steps=series.steps.astype("<i8", copy=False).tobytes(),
            packed_values=series.values.astype("<f8", copy=False).tobytes(),
            packed_wall_time_ns=series.wall_ns.astype("<i8", copy=False).tobytes(),
        )
    msg = query_pb2.StreamMetricSeriesResponse(rank=series.rank)
    msg.steps.extend(series.steps.tolist())
    msg.values.extend(series.values.tolist())
    msg.wall_time_ns.extend(series.wall_ns.tolist())
    return msg


def ranked_to_proto(r: RankedRun) -> query_pb2.RankedRun:
    """Ranking entry -> wire."""
    return query_pb2.RankedRun(
        run_id=str(r.run_id),
        run_name=r.run_name,
        status=r.status,  # type: ignore[arg-type]
        experiment_id=str(r.experiment_id),
        value=r.value,
        step=r.step,
        summary=summary_to_proto(r.summary),
    )


def ranking_to_proto(ranking: Ranking) -> query_pb2.GetBestRunsResponse:
    """Ranking -> wire, with the goal that ranked and whether the runs defined it."""
    return query_pb2.GetBestRunsResponse(
        runs=[ranked_to_proto(r) for r in ranking.runs],
        goal=query_pb2.GOAL_MAXIMIZE if ranking.maximize else query_pb2.GOAL_MINIMIZE,
        goal_defined_by_runs=ranking.goal_defined,
    )


def comparison_to_proto(c: Comparison) -> query_pb2.CompareRunsResponse:
    """Side-by-side comparison -> wire."""
    return query_pb2.CompareRunsResponse(
        runs=[run_to_proto(r) for r in c.runs],
        params=[
            query_pb2.ParamRow(
                key=row.key,
                differs=row.differs,
                cells=[
                    query_pb2.ParamCell(present=v is not None, value=v or "") for v in row.values
                ],
            )
            for row in c.params
        ],
        metrics=[_metric_row(row) for row in c.metrics],
    )


_GOAL = {"min": query_pb2.GOAL_MINIMIZE, "max": query_pb2.GOAL_MAXIMIZE}


def _metric_row(row: MetricRow) -> query_pb2.MetricRow:
    msg = query_pb2.MetricRow(
        key=row.key,
        differs=row.differs,
        cells=[
            query_pb2.MetricCell(present=True, summary=summary_to_proto(s))
            if s is not None
            else query_pb2.MetricCell(present=False)
            for s in row.summaries
        ],
        goal=_GOAL.get(row.goal, query_pb2.GOAL_UNSPECIFIED),
    )
    if row.best is not None:
        msg.best_cell = row.best
    return msg
