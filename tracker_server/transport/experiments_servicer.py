"""ExperimentService: converts, calls the run store, maps errors."""

from __future__ import annotations

from typing import Any

import grpc

from tracker_client.pb import experiments_pb2, experiments_pb2_grpc
from tracker_server.domain.runs import NewRun, check_kv, check_name, parse_uuid
from tracker_server.storage.runs_store import PgRunStore
from tracker_server.transport.convert import experiment_to_proto, run_to_proto, struct_to_dict
from tracker_server.transport.errors import unary

Ctx = grpc.aio.ServicerContext[Any, Any]


class ExperimentServicer(experiments_pb2_grpc.ExperimentServiceServicer):
    """Experiments and runs."""

    def __init__(self, runs: PgRunStore) -> None:
        self._runs = runs

    @unary
    async def CreateExperiment(  # noqa: N802
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

    @unary
    async def CreateRun(  # noqa: N802
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
        )
        run, created = await self._runs.create_run(new)
        return experiments_pb2.CreateRunResponse(run=run_to_proto(run), created=created)

    @unary
    async def GetRun(  # noqa: N802
        self, request: experiments_pb2.GetRunRequest, context: Ctx
    ) -> experiments_pb2.GetRunResponse:
        run = await self._runs.get_run(parse_uuid(request.run_id, "run_id"))
        return experiments_pb2.GetRunResponse(run=run_to_proto(run))
