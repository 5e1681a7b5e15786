"""/api/v1/runs/{run_id}/metrics: write a batch, list keys, read a series."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.exceptions import HTTPException

from tracker_server.domain.errors import invalid
from tracker_server.domain.series_query import AGGREGATIONS, DOWNSAMPLING_METHODS
from tracker_server.http import convert, schemas
from tracker_server.http.context import context, request_call
from tracker_server.http.encoding import ENCODING_DOC, INT64_MAX, INT64_MIN, JsonResponse
from tracker_server.http.errors import PROBLEM_RESPONSES
from tracker_server.http.rpc_map import API_PREFIX
from tracker_server.http.security import Guarded

router = APIRouter(prefix=f"{API_PREFIX}/runs/{{run_id}}/metrics", tags=["metrics"],
                   responses=PROBLEM_RESPONSES)

UNSEQUENCED_WRITER = "rest"
"""The writer of batches sent without ``writer_id`` (and so without ``seq``)."""

_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/MetricsIn"}}}}}


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


@router.post("", response_model=schemas.LogResult, summary="Write a batch of points",
             openapi_extra=_BODY, description=ENCODING_DOC)
async def log_metrics(request: Request, _: Guarded, run_id: str) -> JsonResponse:
    """Answers once the batch is committed. With ``writer_id`` and ``seq`` a retried
    batch is written once (``points_written`` 0 for the replay)."""
    if not _is_json(request.headers.get("content-type", "")):
        raise HTTPException(415, "the body must be application/json")
    body = schemas.MetricsIn.model_validate_json(await request.body())
    if body.seq and not body.writer_id:
        raise invalid("seq needs a writer_id", [("writer_id", "required with seq")])
    columns = convert.columns(body)
    request_call(request).add_batch(int(columns.steps.shape[0]))
    result = await context(request).services.ingest.log_metrics(
        run_id, body.writer_id or UNSEQUENCED_WRITER, body.rank, body.attempt, body.seq,
        columns)
    return JsonResponse({"committed_through_seq": result.committed_through_seq,
                         "points_written": result.points_written})


@router.get("", response_model=schemas.MetricKeys, summary="The metric keys of a run")
async def list_keys(request: Request, _: Guarded, run_id: str) -> JsonResponse:
    """Keys by name with their summaries and the ranks that logged them."""
    infos = await context(request).services.query.list_metric_keys(run_id)
    return JsonResponse({"keys": [convert.key_info(i) for i in infos]})


@router.get("/{key:path}", response_model=schemas.SeriesList, summary="A series",
            description=ENCODING_DOC)
async def get_series(
    request: Request,
    _: Guarded,
    run_id: str,
    key: str,
    start: Annotated[int | None, Query(ge=INT64_MIN, le=INT64_MAX,
                                       description="first step (inclusive)")] = None,
    end: Annotated[int | None, Query(ge=INT64_MIN, le=INT64_MAX,
                                     description="last step (inclusive)")] = None,
    max_points: Annotated[int, Query(description="per series; 0: 1000")] = 0,
    method: Annotated[str, Query(description="how a longer series is reduced",
                                 json_schema_extra={"enum": list(DOWNSAMPLING_METHODS)})
                      ] = "minmax",
    aggregate: Annotated[str, Query(description="one series per rank, or one across ranks",
                                    json_schema_extra={"enum": list(AGGREGATIONS)})
                         ] = "per_rank",
    rank: Annotated[int | None, Query(ge=0, le=2**31 - 1,
                                      description="one rank of a per-rank read")] = None,
) -> JsonResponse:
    """One series per rank (or one aggregate across ranks), downsampled to
    ``max_points``; ``key`` may contain ``/``. ``min_values`` / ``max_values`` are the
    band: across ranks for ``aggregate=mean``, the envelope of each bucket when
    downsampled. A live chart polls with ``start=<last step shown + 1>``."""
    found = await context(request).services.query.get_series(
        [run_id], [key], start_step=start, end_step=end, max_points=max_points,
        downsampling=method, aggregation=aggregate, rank=rank)
    return JsonResponse({"series": [convert.series(s) for s in found]})
