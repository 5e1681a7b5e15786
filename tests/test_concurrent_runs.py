"""Many trainers starting at once (a sweep, a SLURM array) create their runs without
deadlocks, and ranks of one job attach to one run."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.support import Api
from tracker_proto.v1 import experiments_pb2


def test_concurrent_create_run_in_a_new_experiment(api: Api) -> None:
    exp = api.experiments.CreateExperiment(
        experiments_pb2.CreateExperimentRequest(name="sweep")).experiment

    def create(i: int) -> experiments_pb2.CreateRunResponse:
        return api.experiments.CreateRun(experiments_pb2.CreateRunRequest(
            experiment_id=exp.experiment_id, run_key=f"job-{i % 20}"), timeout=30)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(create, range(120)))
    by_key: dict[str, set[str]] = {}
    for r in results:
        by_key.setdefault(r.run.run_key, set()).add(r.run.run_id)
    assert len(by_key) == 20 and all(len(ids) == 1 for ids in by_key.values())
    assert sum(r.created for r in results) == 20
    got = api.experiments.GetExperiment(experiments_pb2.GetExperimentRequest(
        experiment_id=exp.experiment_id)).experiment
    assert got.status == experiments_pb2.EXPERIMENT_STATUS_ACTIVE
