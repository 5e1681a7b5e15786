"""MetricsQueryService over gRPC: proto in, one domain service call, proto out.

Errors (``TrackerError``) become statuses in the call interceptor, for the streaming
export as for the unary calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from tracker_proto.v1 import query_pb2, query_pb2_grpc
from tracker_server.domain.query_service import QueryService
from tracker_server.transport import query_convert as qc
from tracker_server.transport.convert import optional

# grpc ships no type information (mypy sees Any), hence the explicit alias.
Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

_GOALS = {query_pb2.GOAL_MINIMIZE: False, query_pb2.GOAL_MAXIMIZE: True}


class MetricsQueryServicer(query_pb2_grpc.MetricsQueryServiceServicer):
    """Reads of metric keys, series, latest values, rankings and comparisons."""

    def __init__(self, query: QueryService, *, max_message_bytes: int) -> None:
        self._query = query
        self._max_message_bytes = max_message_bytes

    async def ListMetricKeys(
        self, request: query_pb2.ListMetricKeysRequest, context: Ctx
    ) -> query_pb2.ListMetricKeysResponse:
        infos = await self._query.list_metric_keys(request.run_id)
        return query_pb2.ListMetricKeysResponse(keys=[qc.key_info_to_proto(i) for i in infos])

    async def GetMetricSeries(
        self, request: query_pb2.GetMetricSeriesRequest, context: Ctx
    ) -> query_pb2.GetMetricSeriesResponse:
        found = await self._query.get_series(
            list(request.run_ids),
            list(request.keys),
            start_step=optional(request, "start_step"),
            end_step=optional(request, "end_step"),
            max_points=request.max_points,
            downsampling=qc.enum_name(qc.DOWNSAMPLING, request.downsampling),
            aggregation=qc.enum_name(qc.AGGREGATION, request.aggregation),
            rank=optional(request, "rank"),
        )
        return query_pb2.GetMetricSeriesResponse(series=[
            qc.series_to_proto(s.run_id, s.key, s.series, s.aggregation) for s in found
        ])

    async def StreamMetricSeries(
        self, request: query_pb2.StreamMetricSeriesRequest, context: Ctx
    ) -> AsyncIterator[query_pb2.StreamMetricSeriesResponse]:
        pieces = await self._query.export_series(
            request.run_id,
            request.key,
            start_step=optional(request, "start_step"),
            end_step=optional(request, "end_step"),
            rank=optional(request, "rank"),
            points_per_message=request.points_per_message,
        )
        packed = request.packed
        # The domain slices by points_per_message; this keeps each message within the
        # send limit too, which a low TRACKER_MAX_MESSAGE_BYTES could otherwise break.
        cap = qc.export_points_cap(self._max_message_bytes, packed)
        async for piece in pieces:
            for part in qc.split_slice(piece, cap):
                yield qc.slice_to_proto(part, packed)

    async def GetLatestMetrics(
        self, request: query_pb2.GetLatestMetricsRequest, context: Ctx
    ) -> query_pb2.GetLatestMetricsResponse:
        latest = await self._query.latest_metrics(list(request.run_ids), list(request.keys))
        return query_pb2.GetLatestMetricsResponse(runs=[
            query_pb2.RunMetrics(
                run_id=str(r.run_id), metrics=[qc.summary_to_proto(s) for s in r.metrics]
            )
            for r in latest
        ])

    async def GetBestRuns(
        self, request: query_pb2.GetBestRunsRequest, context: Ctx
    ) -> query_pb2.GetBestRunsResponse:
        ranking = await self._query.ranking(
            list(request.experiment_ids),
            request.key,
            maximize=_GOALS.get(request.goal),
            on=qc.enum_name(qc.SUMMARY_FIELD, request.on),
            limit=request.limit,
            filter_text=request.filter,
        )
        return qc.ranking_to_proto(ranking)

    async def CompareRuns(
        self, request: query_pb2.CompareRunsRequest, context: Ctx
    ) -> query_pb2.CompareRunsResponse:
        return qc.comparison_to_proto(await self._query.compare_runs(list(request.run_ids)))
