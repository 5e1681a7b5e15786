"""/api/v1/experiments: list, create, read (with a page of runs), update, best runs."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from tracker_server.http import convert, schemas
from tracker_server.http.context import context
from tracker_server.http.encoding import JsonResponse
from tracker_server.http.errors import PROBLEM_RESPONSES
from tracker_server.http.rpc_map import API_PREFIX
from tracker_server.http.security import Guarded

router = APIRouter(prefix=f"{API_PREFIX}/experiments", tags=["experiments"],
                   responses=PROBLEM_RESPONSES)


@router.get("", response_model=schemas.ExperimentList, summary="List experiments")
async def list_experiments(
    request: Request,
    _: Guarded,
    owner: str = "",
    status: Annotated[list[schemas.ExperimentStatusName] | None,
                      Query(description="repeatable; default created and active")] = None,
    name_prefix: str = "",
    page_size: int = 0,
    page_token: str = "",
) -> JsonResponse:
    """Experiments newest first; ``next_page_token`` is empty on the last page."""
    page = await context(request).services.experiments.list_experiments(
        owner=owner or None,
        statuses=[convert.experiment_status(s) for s in status or ()],
        name_prefix=name_prefix or None,
        page_size=page_size,
        page_token=page_token,
    )
    return JsonResponse({"experiments": [convert.experiment(e) for e in page.items],
                         "next_page_token": page.next_page_token})


@router.post("", response_model=schemas.Experiment, status_code=201,
             summary="Create an experiment",
             responses={200: {"model": schemas.Experiment,
                              "description": "existing experiment (get_if_exists)"}})
async def create_experiment(request: Request, _: Guarded, body: schemas.ExperimentCreate
                            ) -> JsonResponse:
    """409 when the owner already has an experiment of this name (unless
    ``get_if_exists``)."""
    exp, created = await context(request).services.experiments.create_experiment(
        body.name, body.owner, body.description, body.get_if_exists)
    return JsonResponse(convert.experiment(exp), status_code=201 if created else 200)


@router.get("/{experiment_id}", response_model=schemas.ExperimentDetail,
            summary="An experiment and a page of its runs")
async def get_experiment(
    request: Request,
    _: Guarded,
    experiment_id: str,
    runs_page_size: int = 0,
    runs_page_token: str = "",
) -> JsonResponse:
    """Runs newest first."""
    got = await context(request).services.experiments.get_experiment(
        experiment_id, runs_page_size, runs_page_token)
    return JsonResponse({"experiment": convert.experiment(got.experiment),
                         "runs": [convert.run(r) for r in got.runs.items],
                         "next_runs_page_token": got.runs.next_page_token})


@router.patch("/{experiment_id}", response_model=schemas.Experiment,
              summary="Change the description or status")
async def update_experiment(request: Request, _: Guarded, experiment_id: str,
                            body: schemas.ExperimentPatch) -> JsonResponse:
    """Absent fields stay as they are."""
    exp = await context(request).services.experiments.update_experiment(
        experiment_id,
        convert.experiment_status(body.status) if body.status is not None else None,
        body.description,
    )
    return JsonResponse(convert.experiment(exp))


@router.get("/{experiment_id}/best", response_model=schemas.BestRuns,
            summary="The best runs by a metric")
async def best_runs(
    request: Request,
    _: Guarded,
    experiment_id: str,
    metric: str,
    mode: Annotated[Literal["min", "max"] | None,
                    Query(description="min: smallest first; absent: the goal the runs "
                          "defined for the metric (define_metric)")] = None,
    on: Annotated[Literal["last", "min", "max"],
                  Query(description="which summary value ranks the runs")] = "last",
    limit: int = 0,
    filter: Annotated[str, Query(description="run filter language")] = "",
) -> JsonResponse:
    """``mode=min`` ranks the smallest value first. Without ``mode`` the runs rank by
    the goal the experiment's runs defined for the metric (``run.define_metric(key,
    goal=...)``); 400 naming ``mode`` when none did or they disagree. The answer says
    which goal ranked (``mode``) and where it came from (``mode_source``)."""
    ranking = await context(request).services.query.ranking(
        [experiment_id], metric, maximize=None if mode is None else mode == "max", on=on,
        limit=limit, filter_text=filter)
    return JsonResponse({"runs": [convert.ranked(r) for r in ranking.runs],
                         "mode": "max" if ranking.maximize else "min",
                         "mode_source": "runs" if ranking.goal_defined else "request"})
