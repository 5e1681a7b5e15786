"""deploy/slurm/ on a real SLURM cluster (tests/slurm_support.py): train.sbatch, the
epilog, requeue with resume, offline spooling then sync.sbatch — every job's tasks log
through tracker_client to a real tracker server process with API keys required. Then
the epilog's rules and the CLI's --slurm-job-id commands without SLURM."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.slurm_support import SlurmCluster
from tests.support import Api, ServerProcess, ServerThread
from tracker_client.cli import main
from tracker_client.cli.slurm import job_outcome, parse_scontrol
from tracker_proto.v1 import experiments_pb2 as ex
from tracker_server.storage.points_export import materialize_points

needs_slurm = pytest.mark.skipif(
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
        materialize_points(conn, [run_id])
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


@needs_slurm
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


@needs_slurm
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


@needs_slurm
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


@needs_slurm
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


@needs_slurm
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


# --- without SLURM: the outcome rules and the CLI ---------------------------------------

NOW = datetime(2026, 1, 2, 12, 0, 0)


@pytest.mark.parametrize(("raw", "record", "expected"), [
    (0, {}, ("finished", "completed", "0:0")),
    (768, {}, ("failed", "failed", "3:0")),  # exit 3 as a raw wait status
    (9, {}, ("killed", "killed", "0:9")),  # the batch script died of SIGKILL
    (0, {"ExitCode": "0:15", "JobState": "COMPLETING"}, ("killed", "killed", "0:15")),  # scancel
    # A time limit, as the epilog saw it on a real cluster (SLURM_JOB_EXIT_CODE=0 too).
    (0, {"ExitCode": "0:15", "JobState": "COMPLETING", "Reason": "TimeLimit",
         "RunTime": "00:01:27", "EndTime": "2026-01-02T11:59:00"}, ("killed", "killed", "0:15")),
    (0, {"ExitCode": "0:0", "Reason": "TimeLimit"}, ("killed", "killed", "0:0")),
    (0, {"ExitCode": "2:0"}, ("failed", "failed", "2:0")),
    (0, {"Restarts": "1", "RunTime": "00:00:00", "EndTime": "2026-01-02T12:05:00"},
     ("killed", "requeued", "0:0")),
    (0, {"Restarts": "1", "RunTime": "00:00:00", "EndTime": "Unknown"},
     ("killed", "requeued", "0:0")),
    # Restarted before, then completed: its end time is in the past.
    (0, {"Restarts": "1", "RunTime": "00:00:00", "EndTime": "2026-01-02T11:59:59"},
     ("finished", "completed", "0:0")),
    (0, {"Restarts": "1", "RunTime": "00:01:10", "EndTime": "Unknown"},
     ("finished", "completed", "0:0")),
])
def test_job_outcome(raw: int, record: dict[str, str], expected: tuple[str, str, str]) -> None:
    got = job_outcome(raw, record, now=NOW)
    assert (got.status, got.outcome, got.exit_text) == expected


def test_parse_scontrol_one_line_record() -> None:
    line = ("JobId=12 JobName=train UserId=root(0) JobState=COMPLETING Reason=None "
            "Restarts=0 ExitCode=0:15 RunTime=00:00:04 EndTime=2026-01-02T12:00:00 "
            "Command=/x/train.sbatch train.py")
    job = parse_scontrol(line)
    assert job["JobState"] == "COMPLETING" and job["ExitCode"] == "0:15"
    assert job["EndTime"] == "2026-01-02T12:00:00" and job["UserId"] == "root(0)"


def _run(api: Api, exp_id: str, name: str, slurm_job_id: str) -> str:
    return str(api.experiments.CreateRun(ex.CreateRunRequest(
        experiment_id=exp_id, name=name, run_key=name, slurm_job_id=slurm_job_id)).run.run_id)


def _cli(server: ServerThread, capsys: pytest.CaptureFixture[str], *args: str
         ) -> tuple[int, str, str]:
    code = main(["--server", server.address, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_finds_and_ends_the_runs_of_a_job(
    server: ServerThread, api: Api, capsys: pytest.CaptureFixture[str]
) -> None:
    exps = [str(api.experiments.CreateExperiment(ex.CreateExperimentRequest(
        name=f"slurm-cli-{i}")).experiment.experiment_id) for i in range(2)]
    step0, step1 = _run(api, exps[0], "step0", "77"), _run(api, exps[1], "step1", "77")
    _run(api, exps[0], "other", "78")
    api.experiments.FinishRun(ex.FinishRunRequest(run_id=step1, status=ex.RUN_STATUS_FINISHED))

    code, out, _ = _cli(server, capsys, "runs", "ls", "--slurm-job-id", "77", "--json")
    assert code == 0 and {r["name"] for r in json.loads(out)} == {"step0", "step1"}
    code, out, _ = _cli(server, capsys, "runs", "ls", "slurm-cli-1", "--slurm-job-id", "77",
                        "--json")
    assert [r["name"] for r in json.loads(out)] == ["step1"]
    code, _, err = _cli(server, capsys, "runs", "ls")
    assert code == 2 and "--slurm-job-id" in err
    code, _, err = _cli(server, capsys, "runs", "ls", "--slurm-job-id", '77" or true')
    assert code == 2 and "not a SLURM job id" in err

    code, out, _ = _cli(server, capsys, "slurm", "epilog", "--job-id", "77",
                        "--exit-code", "768", "--no-scontrol")
    assert code == 0 and "step0): running -> failed" in out
    assert "step1): finished (kept; job failed, exit 3:0)" in out
    runs = {r.name: r for r in api.experiments.SearchRuns(ex.SearchRunsRequest(
        experiment_ids=exps, filter='slurm_job_id = "77"')).runs}
    assert runs["step0"].status == ex.RUN_STATUS_FAILED and runs["step0"].HasField("ended_at")
    assert runs["step1"].status == ex.RUN_STATUS_FINISHED
    assert all(r.tags["slurm.outcome"] == "failed" for r in runs.values())
    # Running the epilog twice changes nothing (SLURM may retry it).
    code, out, _ = _cli(server, capsys, "slurm", "epilog", "--job-id", "77",
                        "--exit-code", "768", "--no-scontrol")
    assert code == 0 and "running ->" not in out

    code, out, _ = _cli(server, capsys, "runs", "finish", "--slurm-job-id", "78",
                        "--status", "killed")
    assert code == 0 and "other): running -> killed" in out
    code, out, _ = _cli(server, capsys, "runs", "finish", step0, "--status", "failed")
    assert code == 0 and "failed" in out  # the same terminal status again: a no-op
    code, _, err = _cli(server, capsys, "runs", "finish", step0, "--status", "finished")
    assert code == 1 and "FAILED_PRECONDITION" in err
    code, _, err = _cli(server, capsys, "runs", "finish", "--slurm-job-id", "79",
                        "--status", "killed")
    assert code == 2 and "no run of SLURM job 79" in err
