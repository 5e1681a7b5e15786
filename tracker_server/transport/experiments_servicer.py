"""ExperimentService over gRPC: proto in, one domain service call, proto out.

Errors (``TrackerError``) become statuses in the call interceptor.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from tracker_proto.v1 import experiments_pb2, experiments_pb2_grpc
from tracker_server.domain.experiment_service import ExperimentService
from tracker_server.domain.run_service import RunService
from tracker_server.domain.user_summaries import UserSummaries
from tracker_server.transport.convert import (
    experiment_to_proto,
    optional,
    optional_time,
    run_to_proto,
    struct_to_dict,
)

# grpc ships no type information (mypy sees Any), hence the explicit alias.
Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class ExperimentServicer(experiments_pb2_grpc.ExperimentServiceServicer):
    """Experiments and runs."""

    def __init__(self, experiments: ExperimentService, runs: RunService,
                 summaries: UserSummaries) -> None:
        self._experiments = experiments
        self._runs = runs
        self._summaries = summaries

    async def CreateExperiment(
        self, request: experiments_pb2.CreateExperimentRequest, context: Ctx
    ) -> experiments_pb2.CreateExperimentResponse:
        exp, created = await self._experiments.create_experiment(
            request.name, request.owner, request.description, request.get_if_exists
        )
        return experiments_pb2.CreateExperimentResponse(
            experiment=experiment_to_proto(exp), created=created
        )

    async def GetExperiment(
        self, request: experiments_pb2.GetExperimentRequest, context: Ctx
    ) -> experiments_pb2.GetExperimentResponse:
        got = await self._experiments.get_experiment(
            request.experiment_id, request.runs_page_size, request.runs_page_token
        )
        return experiments_pb2.GetExperimentResponse(
            experiment=experiment_to_proto(got.experiment),
            runs=[run_to_proto(r) for r in got.runs.items],
            next_runs_page_token=got.runs.next_page_token,
        )

    async def ListExperiments(
        self, request: experiments_pb2.ListExperimentsRequest, context: Ctx
    ) -> experiments_pb2.ListExperimentsResponse:
        page = await self._experiments.list_experiments(
            owner=request.owner or None,
            statuses=list(request.statuses),
            name_prefix=request.name_prefix or None,
            created_after=optional_time(request, "created_after"),
            created_before=optional_time(request, "created_before"),
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return experiments_pb2.ListExperimentsResponse(
            experiments=[experiment_to_proto(e) for e in page.items],
            next_page_token=page.next_page_token,
        )

    async def UpdateExperiment(
        self, request: experiments_pb2.UpdateExperimentRequest, context: Ctx
    ) -> experiments_pb2.UpdateExperimentResponse:
        exp = await self._experiments.update_experiment(
            request.experiment_id, optional(request, "status"), optional(request, "description")
        )
        return experiments_pb2.UpdateExperimentResponse(experiment=experiment_to_proto(exp))

    async def CreateRun(
        self, request: experiments_pb2.CreateRunRequest, context: Ctx
    ) -> experiments_pb2.CreateRunResponse:
        run, created = await self._runs.create_run(
            request.experiment_id,
            name=request.name,
            run_key=request.run_key,
            seed=optional(request, "seed"),
            slurm_job_id=request.slurm_job_id,
            metadata=struct_to_dict(request.metadata),
            params=dict(request.params),
            tags=dict(request.tags),
            resume=request.resume,
            resume_token=request.resume_token,
        )
        return experiments_pb2.CreateRunResponse(run=run_to_proto(run), created=created)

    async def GetRun(
        self, request: experiments_pb2.GetRunRequest, context: Ctx
    ) -> experiments_pb2.GetRunResponse:
        run = await self._runs.get_run(request.run_id)
        return experiments_pb2.GetRunResponse(run=run_to_proto(run))

    async def SearchRuns(
        self, request: experiments_pb2.SearchRunsRequest, context: Ctx
    ) -> experiments_pb2.SearchRunsResponse:
        page = await self._runs.search_runs(
            list(request.experiment_ids), request.filter, list(request.order_by),
            request.page_size, request.page_token,
        )
        return experiments_pb2.SearchRunsResponse(
            runs=[run_to_proto(r) for r in page.items], next_page_token=page.next_page_token
        )

    async def FinishRun(
        self, request: experiments_pb2.FinishRunRequest, context: Ctx
    ) -> experiments_pb2.FinishRunResponse:
        run = await self._runs.finish_run(
            request.run_id, request.status, optional_time(request, "ended_at")
        )
        return experiments_pb2.FinishRunResponse(run=run_to_proto(run))

    async def LogParams(
        self, request: experiments_pb2.LogParamsRequest, context: Ctx
    ) -> experiments_pb2.LogParamsResponse:
        await self._runs.log_params(request.run_id, dict(request.params))
        return experiments_pb2.LogParamsResponse()

    async def SetTags(
        self, request: experiments_pb2.SetTagsRequest, context: Ctx
    ) -> experiments_pb2.SetTagsResponse:
        tags = await self._runs.set_tags(
            request.run_id, dict(request.tags), list(request.delete_keys)
        )
        return experiments_pb2.SetTagsResponse(tags=tags)

    async def SetSummary(
        self, request: experiments_pb2.SetSummaryRequest, context: Ctx
    ) -> experiments_pb2.SetSummaryResponse:
        summary = await self._summaries.set_summary(
            request.run_id, dict(request.values), list(request.delete_keys)
        )
        return experiments_pb2.SetSummaryResponse(summary=summary)

    async def DefineMetrics(
        self, request: experiments_pb2.DefineMetricsRequest, context: Ctx
    ) -> experiments_pb2.DefineMetricsResponse:
        goals = await self._summaries.define_metrics(request.run_id, dict(request.goals))
        return experiments_pb2.DefineMetricsResponse(goals=goals)
