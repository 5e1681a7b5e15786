"""MetricsQueryService: validates and converts, calls the readers, maps errors."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import grpc

from tracker_proto.v1 import query_pb2, query_pb2_grpc
from tracker_server.domain.errors import invalid
from tracker_server.domain.paging import bounded_count
from tracker_server.domain.run_filter import parse_filter
from tracker_server.domain.runs import check_id_list, check_kv, check_name, parse_uuid
from tracker_server.domain.series import STEP_MAX, STEP_MIN
from tracker_server.domain.series_query import SeriesQuery, SeriesRequest
from tracker_server.domain.summaries import compare
from tracker_server.storage.metrics_read import PgMetricsReader
from tracker_server.storage.runs_store import PgRunQueries
from tracker_server.transport import query_convert as qc

# grpc ships no type information (mypy sees Any), hence the explicit alias.
Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"

MAX_SERIES_RUNS = 100
MAX_SERIES_KEYS = 100
MAX_SERIES = 500
MAX_POINTS = 100_000
MIN_POINTS = 4


def _keys(values: list[str], what: str, most: int, required: bool) -> list[str]:
    if required and not values:
        raise invalid(f"{what} must not be empty", [(what, "empty")])
    if len(values) > most:
        raise invalid(f"at most {most} {what}", [(what, "too many")])
    check_kv({v: "" for v in values}, what)
    return list(dict.fromkeys(values))


def _range(msg: Any) -> tuple[int, int]:
    start = msg.start_step if msg.HasField("start_step") else STEP_MIN
    end = msg.end_step if msg.HasField("end_step") else STEP_MAX
    if start > end:
        raise invalid("start_step is after end_step", [("start_step", "after end_step")])
    return start, end


class MetricsQueryServicer(query_pb2_grpc.MetricsQueryServiceServicer):
    """Reads of metric keys, series, latest values, rankings and comparisons."""

    def __init__(self, reader: PgMetricsReader, runs: PgRunQueries, series: SeriesQuery) -> None:
        self._reader = reader
        self._runs = runs
        self._series = series

    async def ListMetricKeys(
        self, request: query_pb2.ListMetricKeysRequest, context: Ctx
    ) -> query_pb2.ListMetricKeysResponse:
        infos = await self._reader.list_keys(parse_uuid(request.run_id, "run_id"))
        return query_pb2.ListMetricKeysResponse(keys=[qc.key_info_to_proto(i) for i in infos])

    async def GetMetricSeries(
        self, request: query_pb2.GetMetricSeriesRequest, context: Ctx
    ) -> query_pb2.GetMetricSeriesResponse:
        run_ids = check_id_list(list(request.run_ids), "run_ids", MAX_SERIES_RUNS)
        keys = _keys(list(request.keys), "keys", MAX_SERIES_KEYS, required=True)
        if len(run_ids) * len(keys) > MAX_SERIES:
            raise invalid(f"at most {MAX_SERIES} run x key combinations", [("keys", "too many")])
        start, end = _range(request)
        max_points = bounded_count(request.max_points, 1000, MAX_POINTS, "max_points")
        if max_points < MIN_POINTS:
            raise invalid(f"max_points must be at least {MIN_POINTS}", [("max_points", "< 4")])
        method = qc.DOWNSAMPLING.get(request.downsampling)
        aggregation = qc.AGGREGATION.get(request.aggregation)
        if method is None or aggregation is None:
            raise invalid("unknown downsampling or aggregation",
                          [("downsampling", "unknown value")])
        rank = request.rank if request.HasField("rank") else None
        if rank is not None and aggregation != "per_rank":
            raise invalid("rank applies only to per-rank series", [("rank", "with aggregation")])
        req = SeriesRequest(start, end, max_points, method, aggregation, rank)
        await self._reader.require_runs(run_ids)
        key_ids = await self._reader.key_ids(keys)
        out = query_pb2.GetMetricSeriesResponse()
        for run_id in run_ids:
            for key in keys:
                if key not in key_ids:
                    continue
                for s in await self._series.series(run_id, key_ids[key], req):
                    out.series.append(qc.series_to_proto(run_id, key, s, aggregation))
        return out

    async def StreamMetricSeries(
        self, request: query_pb2.StreamMetricSeriesRequest, context: Ctx
    ) -> AsyncIterator[query_pb2.StreamMetricSeriesResponse]:
        run_id = parse_uuid(request.run_id, "run_id")
        key = check_name(request.key, "key")
        start, end = _range(request)
        per_message = bounded_count(
            request.points_per_message, 10_000, MAX_POINTS, "points_per_message"
        )
        rank = request.rank if request.HasField("rank") else None
        await self._reader.require_runs([run_id])
        key_ids = await self._reader.key_ids([key])
        if key not in key_ids:
            return
        async for piece in self._series.export(
            run_id, key_ids[key], start, end, rank, per_message
        ):
            yield qc.slice_to_proto(piece)

    async def GetLatestMetrics(
        self, request: query_pb2.GetLatestMetricsRequest, context: Ctx
    ) -> query_pb2.GetLatestMetricsResponse:
        run_ids = check_id_list(list(request.run_ids), "run_ids", 1000)
        keys = _keys(list(request.keys), "keys", 1000, required=False)
        latest = await self._reader.latest(run_ids, keys)
        return query_pb2.GetLatestMetricsResponse(
            runs=[
                query_pb2.RunMetrics(
                    run_id=str(r), metrics=[qc.summary_to_proto(s) for s in latest[r]]
                )
                for r in run_ids
            ]
        )

    async def GetBestRuns(
        self, request: query_pb2.GetBestRunsRequest, context: Ctx
    ) -> query_pb2.GetBestRunsResponse:
        experiment_ids = check_id_list(list(request.experiment_ids), "experiment_ids", 100)
        key = check_name(request.key, "key")
        if request.goal not in (query_pb2.GOAL_MINIMIZE, query_pb2.GOAL_MAXIMIZE):
            raise invalid("goal must be MINIMIZE or MAXIMIZE", [("goal", "unset")])
        on = qc.SUMMARY_FIELD.get(request.on)
        if on is None:
            raise invalid("unknown summary field", [("on", "unknown value")])
        limit = bounded_count(request.limit, 10, 1000, "limit")
        where = parse_filter(request.filter)
        ranked = await self._reader.best_runs(
            experiment_ids, key, request.goal == query_pb2.GOAL_MAXIMIZE, on, limit, where
        )
        return query_pb2.GetBestRunsResponse(runs=[qc.ranked_to_proto(r) for r in ranked])

    async def CompareRuns(
        self, request: query_pb2.CompareRunsRequest, context: Ctx
    ) -> query_pb2.CompareRunsResponse:
        run_ids = check_id_list(list(request.run_ids), "run_ids", 100)
        runs = await self._runs.get_runs(run_ids)
        latest = await self._reader.latest(run_ids, [])
        summaries: dict[uuid.UUID, dict[str, Any]] = {
            r: {s.key: s for s in latest[r]} for r in run_ids
        }
        return qc.comparison_to_proto(compare(runs, summaries))
