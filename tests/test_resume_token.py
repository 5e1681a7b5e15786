"""A resume is counted once per token: every rank of a restart gets the same attempt."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import tracker_client
from tests.client_support import fast
from tests.support import Api, ServerThread
from tracker_proto.v1 import experiments_pb2


def _create(api: Api, exp_id: str, resume: bool, token: str = "") -> experiments_pb2.Run:
    return api.experiments.CreateRun(experiments_pb2.CreateRunRequest(
        experiment_id=exp_id, run_key="job", resume=resume, resume_token=token)).run


def test_resume_counts_once_per_token(api: Api) -> None:
    exp = api.experiments.CreateExperiment(
        experiments_pb2.CreateExperimentRequest(name="resume")).experiment
    first = _create(api, exp.experiment_id, resume=True, token="restart-0")
    assert first.attempt == 0  # created by a resume call: nothing to resume yet
    assert _create(api, exp.experiment_id, resume=True, token="restart-0").attempt == 0
    # A restart: 8 ranks race with the same token; one increment.
    attempts: list[int] = []
    threads = [threading.Thread(target=lambda: attempts.append(
        _create(api, exp.experiment_id, resume=True, token="restart-1").attempt))
        for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert attempts == [1] * 8
    # A retried call (answer lost) with the same token does not count twice.
    assert _create(api, exp.experiment_id, resume=True, token="restart-1").attempt == 1
    # Plain attach never changes the attempt; an empty token counts every call.
    assert _create(api, exp.experiment_id, resume=False).attempt == 1
    assert _create(api, exp.experiment_id, resume=True).attempt == 2
    assert _create(api, exp.experiment_id, resume=True).attempt == 3
    assert _create(api, exp.experiment_id, resume=True, token="restart-2").attempt == 4


def test_ranks_of_a_restarted_torchrun_job_share_one_attempt(
    server: ServerThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rank 1 attaches before rank 0 asks to resume: both still land in the new attempt."""
    address = server.address
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-42")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    first = tracker_client.init(experiment="te", server=address, rank=0,
                                options=fast(tmp_path))
    assert first.attempt == 0
    first.close(timeout=10)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # torchrun restarted the job
    runs = [tracker_client.init(experiment="te", server=address, rank=r, resume=True,
                                options=fast(tmp_path))
            for r in (1, 0)]
    try:
        assert [r.run_id for r in runs] == [first.run_id] * 2
        assert [r.attempt for r in runs] == [1, 1]
    finally:
        for r in runs:
            r.close(timeout=10)
