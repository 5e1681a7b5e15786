"""Multi-GPU: ranks of one job attach to one run and stream their own points."""

from __future__ import annotations

import multiprocessing
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client_support import rank_worker, stored
from tests.support import Api, ServerThread
from tracker_proto.v1 import experiments_pb2

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parent.parent
STEPS = 500


def run_of(api: Api, exp_name: str) -> experiments_pb2.Run:
    runs = api.experiments.SearchRuns(experiments_pb2.SearchRunsRequest(
        experiment_ids=[api.experiments.CreateExperiment(experiments_pb2.CreateExperimentRequest(
            name=exp_name, get_if_exists=True)).experiment.experiment_id])).runs
    assert len(runs) == 1, f"expected one run, got {len(runs)}"
    return runs[0]


def test_two_process_ranks_into_one_run(
    server: ServerThread, api: Api, database_url: str, tmp_path: Path
) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=rank_worker,
                         args=(r, server.address, "job-42", str(tmp_path), STEPS))
             for r in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
        assert p.exitcode == 0
    run = run_of(api, "ranks")
    assert run.run_key == "job-42"
    assert run.status == experiments_pb2.RUN_STATUS_FINISHED  # set by rank 0 only
    counts = stored(database_url, run.run_id)
    for rank in (0, 1):
        mine = [k for k in counts if k[1] == rank]
        assert len(mine) == 2 * STEPS
    assert max(counts.values()) == 1
    assert run.metadata["rank"] in (0.0, 1.0) and "python" in run.metadata


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- multi-gpu-example -->\n```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its multi-GPU example"
    return match.group(1)


def test_readme_multi_gpu_example_is_twenty_lines() -> None:
    assert len(readme_example().strip().splitlines()) <= 20


def test_torch_distributed_gloo_two_ranks_run_the_readme_example(
    server: ServerThread, api: Api, database_url: str, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    script = tmp_path / "train.py"
    script.write_text(readme_example(), encoding="utf-8")
    env = {**os.environ, "TRACKER_SERVER": server.address, "PYTHONPATH": str(ROOT),
           "TRACKER_SPOOL_DIR": str(tmp_path / "spool"), "OMP_NUM_THREADS": "1",
}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_of(api, "ddp-demo")
    assert run.run_key.startswith("torchelastic-")
    assert run.status == experiments_pb2.RUN_STATUS_FINISHED
    counts = stored(database_url, run.run_id)
    ranks = {k[1] for k in counts}
    assert ranks == {0, 1}
    assert max(counts.values()) == 1
    assert all(sum(1 for k in counts if k[1] == r and k[0] == "loss") == 100 for r in ranks)
