"""ExperimentService: converts, calls the run store, maps errors."""

from __future__ import annotations

import uuid
from datetime import UTC
from typing import Any, TypeAlias

import grpc

from tracker_proto.v1 import experiments_pb2, experiments_pb2_grpc
from tracker_server.domain.errors import invalid
from tracker_server.domain.paging import decode_token, encode_token, fingerprint, page_size
from tracker_server.domain.run_filter import parse_filter, parse_order_by
from tracker_server.domain.runs import (
    ExperimentStatus,
    NewRun,
    Run,
    check_experiment_status,
    check_finish_status,
    check_id_list,
    check_kv,
    check_name,
    parse_uuid,
)
from tracker_server.storage.run_search import PgRunSearch
from tracker_server.storage.runs_store import PgRunQueries
from tracker_server.transport.convert import experiment_to_proto, run_to_proto, struct_to_dict

MAX_SEARCH_EXPERIMENTS = 100
_DEFAULT_STATUSES = [ExperimentStatus.CREATED, ExperimentStatus.ACTIVE]

# grpc ships no type information (mypy sees Any), hence the explicit alias.
Ctx: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class ExperimentServicer(experiments_pb2_grpc.ExperimentServiceServicer):
    """Experiments and runs."""

    def __init__(self, runs: PgRunQueries, search: PgRunSearch) -> None:
        self._runs = runs
        self._search = search

    async def CreateExperiment(
        self, request: experiments_pb2.CreateExperimentRequest, context: Ctx
    ) -> experiments_pb2.CreateExperimentResponse:
        exp, created = await self._runs.create_experiment(
            check_name(request.name, "name"),
            check_name(request.owner, "owner", required=False),
            request.description[:10_000],
            get_if_exists=request.get_if_exists,
        )
        return experiments_pb2.CreateExperimentResponse(
            experiment=experiment_to_proto(exp), created=created
        )

    async def CreateRun(
        self, request: experiments_pb2.CreateRunRequest, context: Ctx
    ) -> experiments_pb2.CreateRunResponse:
        new = NewRun(
            experiment_id=parse_uuid(request.experiment_id, "experiment_id"),
            name=check_name(request.name, "name", required=False),
            run_key=check_name(request.run_key, "run_key", required=False),
            seed=request.seed if request.HasField("seed") else None,
            slurm_job_id=check_name(request.slurm_job_id, "slurm_job_id", required=False),
            metadata=struct_to_dict(request.metadata),
            params=check_kv(dict(request.params), "params"),
            tags=check_kv(dict(request.tags), "tags"),
            resume=request.resume,
            resume_token=check_name(request.resume_token, "resume_token", required=False),
        )
        run, created = await self._runs.create_run(new)
        return experiments_pb2.CreateRunResponse(run=run_to_proto(run), created=created)

    async def GetRun(
        self, request: experiments_pb2.GetRunRequest, context: Ctx
    ) -> experiments_pb2.GetRunResponse:
        run = await self._runs.get_run(parse_uuid(request.run_id, "run_id"))
        return experiments_pb2.GetRunResponse(run=run_to_proto(run))

    async def GetExperiment(
        self, request: experiments_pb2.GetExperimentRequest, context: Ctx
    ) -> experiments_pb2.GetExperimentResponse:
        experiment_id = parse_uuid(request.experiment_id, "experiment_id")
        limit = page_size(request.runs_page_size, "runs_page_size")
        exp = await self._runs.get_experiment(experiment_id)
        runs, token = await self._search_page(
            [experiment_id], "", [], limit, request.runs_page_token, "runs_page_token"
        )
        return experiments_pb2.GetExperimentResponse(
            experiment=experiment_to_proto(exp),
            runs=[run_to_proto(r) for r in runs],
            next_runs_page_token=token,
        )

    async def ListExperiments(
        self, request: experiments_pb2.ListExperimentsRequest, context: Ctx
    ) -> experiments_pb2.ListExperimentsResponse:
        limit = page_size(request.page_size)
        statuses = sorted({check_experiment_status(s) for s in request.statuses})
        after = request.created_after.ToDatetime(tzinfo=UTC) if request.HasField(
            "created_after") else None
        before = request.created_before.ToDatetime(tzinfo=UTC) if request.HasField(
            "created_before") else None
        query = fingerprint(
            "experiments", request.owner, [int(s) for s in statuses], request.name_prefix,
            str(after), str(before),
        )
        position = decode_token(request.page_token, query, 2) if request.page_token else None
        page = await self._runs.list_experiments(
            owner=request.owner or None,
            statuses=statuses or _DEFAULT_STATUSES,
            name_prefix=request.name_prefix or None,
            created_after=after,
            created_before=before,
            limit=limit,
            after=position,
        )
        token = encode_token(query, page.next_position) if page.next_position else ""
        return experiments_pb2.ListExperimentsResponse(
            experiments=[experiment_to_proto(e) for e in page.experiments],
            next_page_token=token,
        )

    async def UpdateExperiment(
        self, request: experiments_pb2.UpdateExperimentRequest, context: Ctx
    ) -> experiments_pb2.UpdateExperimentResponse:
        experiment_id = parse_uuid(request.experiment_id, "experiment_id")
        status = check_experiment_status(request.status) if request.HasField("status") else None
        description = request.description[:10_000] if request.HasField("description") else None
        exp = await self._runs.update_experiment(experiment_id, status, description)
        return experiments_pb2.UpdateExperimentResponse(experiment=experiment_to_proto(exp))

    async def SearchRuns(
        self, request: experiments_pb2.SearchRunsRequest, context: Ctx
    ) -> experiments_pb2.SearchRunsResponse:
        experiment_ids = check_id_list(
            list(request.experiment_ids), "experiment_ids", MAX_SEARCH_EXPERIMENTS
        )
        runs, token = await self._search_page(
            experiment_ids, request.filter, list(request.order_by),
            page_size(request.page_size), request.page_token, "page_token",
        )
        return experiments_pb2.SearchRunsResponse(
            runs=[run_to_proto(r) for r in runs], next_page_token=token
        )

    async def _search_page(
        self,
        experiment_ids: list[uuid.UUID],
        filter_text: str,
        order_by: list[str],
        limit: int,
        page_token: str,
        token_field: str,
    ) -> tuple[list[Run], str]:
        where = parse_filter(filter_text)
        order = parse_order_by(order_by)
        query = fingerprint(
            "runs", sorted(str(e) for e in experiment_ids), filter_text, order_by
        )
        n_keys = self._search.key_count(order)
        position = (
            decode_token(page_token, query, n_keys, token_field) if page_token else None
        )
        page = await self._search.search(experiment_ids, where, order, limit, position)
        token = encode_token(query, page.next_position) if page.next_position else ""
        return page.runs, token

    async def FinishRun(
        self, request: experiments_pb2.FinishRunRequest, context: Ctx
    ) -> experiments_pb2.FinishRunResponse:
        run_id = parse_uuid(request.run_id, "run_id")
        status = check_finish_status(request.status)
        ended_at = request.ended_at.ToDatetime(tzinfo=UTC) if request.HasField(
            "ended_at") else None
        run = await self._runs.finish_run(run_id, status, ended_at)
        return experiments_pb2.FinishRunResponse(run=run_to_proto(run))

    async def LogParams(
        self, request: experiments_pb2.LogParamsRequest, context: Ctx
    ) -> experiments_pb2.LogParamsResponse:
        run_id = parse_uuid(request.run_id, "run_id")
        params = check_kv(dict(request.params), "params")
        if not params:
            raise invalid("params must not be empty", [("params", "empty")])
        await self._runs.log_params(run_id, params)
        return experiments_pb2.LogParamsResponse()

    async def SetTags(
        self, request: experiments_pb2.SetTagsRequest, context: Ctx
    ) -> experiments_pb2.SetTagsResponse:
        run_id = parse_uuid(request.run_id, "run_id")
        tags = check_kv(dict(request.tags), "tags")
        delete = list(check_kv({k: "" for k in request.delete_keys}, "delete_keys"))
        all_tags = await self._runs.set_tags(run_id, tags, delete)
        return experiments_pb2.SetTagsResponse(tags=all_tags)
