"""deploy/slurm/ on a real SLURM cluster (tests/slurm_support.py): train.sbatch, the
epilog, requeue with resume, offline spooling then sync.sbatch — every job's tasks log
through tracker_client to a real tracker server process with API keys required."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.slurm_support import SlurmCluster
from tests.support import ServerProcess

pytestmark = pytest.mark.skipif(
    shutil.which("sbatch") is None,
    reason="SLURM is not installed (no sbatch); .ci/run installs slurm-wlm and munge",
)

ROOT = Path(__file__).resolve().parent.parent
SLURM_DIR = ROOT / "deploy" / "slurm"
BIN = Path(sys.executable).parent
STEPS = 20

TRAIN = f"""
import os, sys, time
from pathlib import Path
import tracker_client

mode = sys.argv[1]
rank = int(os.environ["SLURM_PROCID"])
restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
run = tracker_client.init(config={{"lr": 0.1}}, resume=mode == "requeue")
for step in range({STEPS}):
    run.log({{"loss": 1.0 / (step + 1), "restarts": restarts}}, step=step)
if mode in ("hang", "crash") or (mode == "requeue" and restarts == 0):
    assert run.flush(timeout=30).durable or run.mode == "offline"
    if mode == "crash":
        os._exit(3)  # dies without finishing the run: only the epilog can tell
    Path(f"{{os.environ['SLURM_JOB_ID']}}.{{rank}}.ready").touch()
    time.sleep(600)  # until scancel / scontrol requeue
run.finish()
if mode == "late-fail" and rank == 1:
    sys.exit(3)  # after rank 0 marked the run finished
"""


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A single-node cluster whose Epilog is deploy/slurm/epilog.sh."""
    cluster = SlurmCluster(SLURM_DIR / "epilog.sh")
    try:
        cluster.start()
        (cluster.work / "train.py").write_text(TRAIN)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def slurm_db(pg_admin_url: str, template_url: str) -> Iterator[str]:
    """One migrated database for the module's server."""
    name = f"slurm_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE tracker_template")
    try:
        yield psycopg.conninfo.make_conninfo(pg_admin_url, dbname=name)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def operator_key(slurm_db: str) -> str:
    """An operator key, what jobs and the epilog use."""
    out = subprocess.run(
        [sys.executable, "-m", "tracker_server", "keys", "create", "--role", "operator",
         "--name", "slurm-cluster"],
        env={**os.environ, "DATABASE_URL": slurm_db}, capture_output=True, text=True,
        check=True, timeout=60)
    return out.stdout.strip()


@pytest.fixture(scope="module")
def tracker(slurm_db: str, operator_key: str, slurm_cluster: SlurmCluster
            ) -> Iterator[ServerProcess]:
    """A tracker-server process requiring keys; the epilog is pointed at it."""
    server = ServerProcess(slurm_db, TRACKER_AUTH="required")
    server.start(timeout=60)
    slurm_cluster.configure_epilog(TRACKER_SERVER=server.address,
                                   TRACKER_API_KEY=operator_key,
                                   TRACKER_CLI=str(BIN / "tracker"))
    try:
        yield server
    finally:
        server.terminate()


def train(cluster: SlurmCluster, tracker: ServerProcess, key: str, name: str, mode: str,
          *sbatch_args: str, **env: str) -> str:
    """Submit train.sbatch running the test's train.py in ``mode``."""
    job_env = {"PATH": f"{BIN}:{os.environ['PATH']}", "TRACKER_SERVER": tracker.address,
               "TRACKER_API_KEY": key, "HOME": str(cluster.work), **env}
    return cluster.sbatch(f"--job-name={name}", "--time=5", *sbatch_args,
                          str(SLURM_DIR / "train.sbatch"), "train.py", mode, env=job_env)


def job_runs(tracker: ServerProcess, key: str, job_id: str) -> list[dict[str, Any]]:
    """``tracker runs ls --slurm-job-id`` (every experiment), as JSON."""
    out = subprocess.run(
        [str(BIN / "tracker"), "--server", tracker.address, "--api-key", key, "--json",
         "runs", "ls", "--slurm-job-id", job_id],
        capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    runs: list[dict[str, Any]] = json.loads(out.stdout)
    return runs


def points(db: str, run_id: str) -> dict[tuple[int, int], int]:
    """(attempt, rank) -> points stored (attempts count from 0)."""
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT attempt, rank, count(*) FROM metric_points WHERE run_id = %s "
            "GROUP BY attempt, rank", (run_id,)).fetchall()
    return {(a, r): n for a, r, n in rows}


def wait_ready(cluster: SlurmCluster, job_id: str, ranks: int = 2, timeout: float = 60) -> None:
    """Until every rank of the job has flushed and touched its marker file."""
    deadline = time.monotonic() + timeout
    while not all((cluster.work / f"{job_id}.{r}.ready").exists() for r in range(ranks)):
        assert time.monotonic() < deadline, cluster.output(job_id) + cluster.logs()
        time.sleep(0.2)


def test_two_task_job_logs_into_one_run_with_its_slurm_facts(
    slurm_cluster: SlurmCluster, tracker: ServerProcess, operator_key: str, slurm_db: str
) -> None:
    job_id = train(slurm_cluster, tracker, operator_key, "slurm-ok", "ok", "--gpus=1")
    job = slurm_cluster.wait(job_id)
    assert job["JobState"] == "COMPLETED", slurm_cluster.output(job_id)
    [run] = job_runs(tracker, operator_key, job_id)
    assert run["slurm_job_id"] == job_id and run["run_key"].startswith(f"slurm-{job_id}")
    assert run["status"] == "RUN_STATUS_FINISHED" and run["ended_at"]
    assert points(slurm_db, run["run_id"]) == {(0, 0): 2 * STEPS, (0, 1): 2 * STEPS}
    slurm = run["metadata"]["slurm"]
    assert slurm["job_id"] == job_id and slurm["job_name"] == "slurm-ok"
    assert slurm["partition"] == "debug" and slurm["node_list"] == slurm_cluster.host
    assert slurm["tasks"] == "2" and slurm["nodes"] == "1"
    assert slurm["gpus"] == "1"
    assert run["metadata"]["world_size"] == 2
    # The epilog found the run already finished by rank 0 and only tagged it.
    assert run["tags"] == {"slurm.outcome": "completed", "slurm.exit_code": "0:0"}


def test_epilog_fails_a_crashed_job_and_keeps_a_finished_run(
    slurm_cluster: SlurmCluster, tracker: ServerProcess, operator_key: str
) -> None:
    crashed = train(slurm_cluster, tracker, operator_key, "slurm-crash", "crash")
    late = train(slurm_cluster, tracker, operator_key, "slurm-late", "late-fail")
    assert slurm_cluster.wait(crashed)["ExitCode"] == "3:0"
    assert slurm_cluster.wait(late)["JobState"] == "FAILED"
    [run] = job_runs(tracker, operator_key, crashed)
    assert run["status"] == "RUN_STATUS_FAILED" and run["ended_at"]
    assert run["tags"] == {"slurm.outcome": "failed", "slurm.exit_code": "3:0"}
    # Rank 0 finished it before rank 1 exited 3: the status stays, the tag tells.
    [run] = job_runs(tracker, operator_key, late)
    assert run["status"] == "RUN_STATUS_FINISHED"
    assert run["tags"] == {"slurm.outcome": "failed", "slurm.exit_code": "3:0"}


def test_epilog_marks_a_cancelled_job_killed(
    slurm_cluster: SlurmCluster, tracker: ServerProcess, operator_key: str, slurm_db: str
) -> None:
    job_id = train(slurm_cluster, tracker, operator_key, "slurm-cancel", "hang")
    wait_ready(slurm_cluster, job_id)
    [run] = job_runs(tracker, operator_key, job_id)
    assert run["status"] == "RUN_STATUS_RUNNING"
    slurm_cluster.run("scancel", job_id)
    slurm_cluster.wait(job_id, frozenset({"CANCELLED"}))
    [run] = job_runs(tracker, operator_key, job_id)
    assert run["status"] == "RUN_STATUS_KILLED" and run["ended_at"]
    assert run["tags"]["slurm.outcome"] == "killed"
    assert points(slurm_db, run["run_id"]) == {(0, 0): 2 * STEPS, (0, 1): 2 * STEPS}


def test_requeued_job_resumes_one_new_attempt(
    slurm_cluster: SlurmCluster, tracker: ServerProcess, operator_key: str, slurm_db: str
) -> None:
    job_id = train(slurm_cluster, tracker, operator_key, "slurm-requeue", "requeue")
    wait_ready(slurm_cluster, job_id)
    slurm_cluster.run("scontrol", "requeue", job_id)
    slurm_cluster.wait(job_id, frozenset({"PENDING"}), Restarts="1")
    [run] = job_runs(tracker, operator_key, job_id)
    assert run["status"] == "RUN_STATUS_KILLED", slurm_cluster.logs()  # epilog ended attempt 0
    assert run["tags"]["slurm.outcome"] == "requeued"
    # A requeued job waits out the credential lifetime (120 s) before it may start.
    slurm_cluster.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")
    assert slurm_cluster.wait(job_id)["JobState"] == "COMPLETED", slurm_cluster.output(job_id)
    [run] = job_runs(tracker, operator_key, job_id)
    assert run["attempt"] == 1  # both ranks resumed (from attempt 0): up once
    assert run["status"] == "RUN_STATUS_FINISHED"
    assert run["tags"]["slurm.outcome"] == "completed"
    assert points(slurm_db, run["run_id"]) == {(a, r): 2 * STEPS for a in (0, 1) for r in (0, 1)}


def test_offline_job_then_dependent_sync_job_uploads_once(
    slurm_cluster: SlurmCluster, tracker: ServerProcess, operator_key: str, slurm_db: str
) -> None:
    spool = slurm_cluster.work / "shared-spool"
    job_id = train(slurm_cluster, tracker, operator_key, "slurm-offline", "ok",
                   TRACKER_OFFLINE="1", TRACKER_SPOOL_DIR=str(spool))
    env = {"PATH": f"{BIN}:{os.environ['PATH']}", "TRACKER_SERVER": tracker.address,
           "TRACKER_API_KEY": operator_key, "TRACKER_SPOOL_DIR": str(spool)}
    sync = slurm_cluster.sbatch("--hold", f"--dependency=afterany:{job_id}",
                                str(SLURM_DIR / "sync.sbatch"), env=env)
    assert slurm_cluster.wait(job_id)["JobState"] == "COMPLETED", slurm_cluster.output(job_id)
    assert job_runs(tracker, operator_key, job_id) == []  # nothing left the compute node
    assert any(spool.iterdir())
    slurm_cluster.run("scontrol", "release", sync)
    assert slurm_cluster.wait(sync)["JobState"] == "COMPLETED", slurm_cluster.output(sync)
    again = slurm_cluster.sbatch(str(SLURM_DIR / "sync.sbatch"), env=env)
    assert slurm_cluster.wait(again)["JobState"] == "COMPLETED", slurm_cluster.output(again)
    [run] = job_runs(tracker, operator_key, job_id)
    assert run["status"] == "RUN_STATUS_FINISHED"
    assert points(slurm_db, run["run_id"]) == {(0, 0): 2 * STEPS, (0, 1): 2 * STEPS}
