"""/api/v1/runs: search, create, read (with summaries), finish, params, tags; and
/api/v1/compare."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from tracker_server.http import convert, schemas
from tracker_server.http.context import context
from tracker_server.http.encoding import JsonResponse
from tracker_server.http.errors import PROBLEM_RESPONSES
from tracker_server.http.rpc_map import API_PREFIX
from tracker_server.http.security import Guarded

router = APIRouter(prefix=API_PREFIX, tags=["runs"], responses=PROBLEM_RESPONSES)


@router.get("/runs", response_model=schemas.RunList,
            summary="Search runs (with their metric summaries)")
async def search_runs(
    request: Request,
    _: Guarded,
    experiment_id: Annotated[list[str], Query(description="repeatable, 1 to 100")],
    filter: Annotated[str, Query(description="run filter language, e.g. "
                                 "`params.lr = '0.1' and metrics.loss < 0.5`")] = "",
    order_by: Annotated[list[str] | None, Query(description="repeatable, up to 3: "
                                                "`field [asc|desc]`")] = None,
    page_size: int = 0,
    page_token: str = "",
) -> JsonResponse:
    """Runs of the experiments matching the filter, each with its metric summaries; a
    bad filter is 400 with the position of the problem."""
    services = context(request).services
    page = await services.runs.search_runs(
        experiment_id, filter, order_by or (), page_size, page_token)
    ids = [str(r.run_id) for r in page.items]
    latest = await services.query.latest_metrics(ids) if ids else []
    return JsonResponse({
        "runs": [convert.run(r, m.metrics) for r, m in zip(page.items, latest, strict=True)],
        "next_page_token": page.next_page_token})


@router.post("/runs", response_model=schemas.Run, status_code=201, summary="Create a run",
             responses={200: {"model": schemas.Run, "description": "existing run_key"}})
async def create_run(request: Request, _: Guarded, body: schemas.RunCreate) -> JsonResponse:
    """201 with a new run; 200 with the existing run of this ``run_key``."""
    r, created = await context(request).services.runs.create_run(
        body.experiment_id,
        name=body.name,
        run_key=body.run_key,
        seed=body.seed,
        slurm_job_id=body.slurm_job_id,
        metadata=body.metadata,
        params=body.params,
        tags=body.tags,
        resume=body.resume,
        resume_token=body.resume_token,
    )
    return JsonResponse(convert.run(r), status_code=201 if created else 200)


@router.get("/runs/{run_id}", response_model=schemas.Run, summary="A run and its summaries")
async def get_run(request: Request, _: Guarded, run_id: str) -> JsonResponse:
    """The run with params, tags and one summary per metric key."""
    services = context(request).services
    r = await services.runs.get_run(run_id)
    (latest,) = await services.query.latest_metrics([run_id])
    return JsonResponse(convert.run(r, latest.metrics))


@router.post("/runs/{run_id}/finish", response_model=schemas.Run, summary="End a run")
async def finish_run(request: Request, _: Guarded, run_id: str, body: schemas.RunFinish
                     ) -> JsonResponse:
    """finished, failed or killed; repeating the same status is a no-op, changing a
    finished run is 412."""
    r = await context(request).services.runs.finish_run(
        run_id, convert.run_status(body.status), body.ended_at)
    return JsonResponse(convert.run(r))


@router.post("/runs/{run_id}/params", status_code=204, summary="Add params")
async def log_params(request: Request, _: Guarded, run_id: str, body: schemas.ParamsAdd
                     ) -> Response:
    """Params are immutable: another value for an existing key is 409 (nothing added)."""
    await context(request).services.runs.log_params(run_id, body.params)
    return Response(status_code=204)


@router.patch("/runs/{run_id}/tags", response_model=dict[str, str], summary="Change tags")
async def set_tags(request: Request, _: Guarded, run_id: str, body: schemas.TagsPatch
                   ) -> JsonResponse:
    """Delete ``delete``, then set ``set``; answers every tag of the run."""
    tags = await context(request).services.runs.set_tags(run_id, body.set, body.delete)
    return JsonResponse(tags)


@router.get("/compare", response_model=schemas.Comparison, summary="Compare runs")
async def compare_runs(
    request: Request,
    _: Guarded,
    run_id: Annotated[list[str], Query(description="repeatable, 1 to 100")],
) -> JsonResponse:
    """Params and metric summaries side by side, rows marked where the runs differ."""
    return JsonResponse(convert.comparison(
        await context(request).services.query.compare_runs(run_id)))
