"""deploy/: the SLURM scripts run for real (with a stand-in srun), and the Kubernetes
manifests and Dockerfile agree with the code they deploy."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.support import ServerThread
from tracker_server.config import Settings, env_var

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"

# srun stand-in: start SLURM_NTASKS copies of the command, each with its SLURM_PROCID.
FAKE_SRUN = """#!/bin/bash
pids=()
for ((i = 0; i < ${SLURM_NTASKS:-1}; i++)); do
    SLURM_PROCID=$i "$@" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
"""

TRAIN = """
import tracker_client
with tracker_client.init(config={"lr": 0.1}) as run:
    for step in range(50):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
"""


def _slurm_env(tmp_path: Path, server: ServerThread, **extra: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    srun = bin_dir / "srun"
    srun.write_text(FAKE_SRUN)
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TRACKER_"))}
    env.update(
        PATH=f"{bin_dir}:{Path(sys.executable).parent}:{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT), SLURM_JOB_ID="4242", SLURM_JOB_NAME="deploy-test",
        SLURM_NTASKS="2", TRACKER_SERVER=server.address,
        TRACKER_SPOOL_DIR=str(tmp_path / "spool"), HOME=str(tmp_path),
    )
    env.update(extra)
    return env


def _points_by_rank(database_url: str) -> dict[int, int]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT p.rank, count(*) FROM metric_points p JOIN runs r USING (run_id) "
            "JOIN experiments e USING (experiment_id) "
            "WHERE r.run_key = 'slurm-4242' AND e.name = 'deploy-test' GROUP BY p.rank"
        ).fetchall()
        runs = conn.execute("SELECT count(*) FROM runs WHERE run_key = 'slurm-4242'").fetchone()
    assert runs == (1,)
    return dict(rows)


def test_slurm_job_ranks_log_into_one_run(
    server: ServerThread, database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "train.py").write_text(TRAIN)
    proc = subprocess.run(["bash", str(DEPLOY / "slurm" / "train.sbatch"), "train.py"],
                          cwd=tmp_path, env=_slurm_env(tmp_path, server),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _points_by_rank(database_url) == {0: 50, 1: 50}


def test_slurm_offline_job_then_sync_job(
    server: ServerThread, database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "train.py").write_text(TRAIN)
    env = _slurm_env(tmp_path, server, TRACKER_OFFLINE="1")
    proc = subprocess.run(["bash", str(DEPLOY / "slurm" / "train.sbatch"), "train.py"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM metric_chunks").fetchone() == (0,)
    tracker = Path(sys.executable).parent / "tracker"
    if not tracker.exists():
        pytest.skip("the tracker console script is not installed next to this interpreter")
    for _ in range(2):  # exactly once, however often the sync job runs
        proc = subprocess.run(["bash", str(DEPLOY / "slurm" / "sync.sbatch")], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert _points_by_rank(database_url) == {0: 50, 1: 50}


def test_scripts_require_a_server_address(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    for script in ("train.sbatch", "sync.sbatch"):
        proc = subprocess.run(["bash", str(DEPLOY / "slurm" / script), "train.py"],
                              env=env, capture_output=True, text=True, timeout=30)
        assert proc.returncode != 0 and "TRACKER_SERVER" in proc.stderr


def test_kubernetes_manifests_match_the_server() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "tracker.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"} <= set(kinds)
    known = {env_var(name) for name in Settings.__dataclass_fields__}
    config = kinds["ConfigMap"]["data"]
    assert set(config) <= known, set(config) - known
    port = int(config["TRACKER_LISTEN"].rsplit(":", 1)[1])
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["ports"][0]["containerPort"] == port
    assert container["readinessProbe"]["grpc"]["port"] == port
    assert container["livenessProbe"]["grpc"]["port"] == port
    env = {e["name"] for e in container.get("env", [])}
    assert env <= known
    # SIGKILL must not come before the server's graceful stop (and last flush) ends.
    assert pod["terminationGracePeriodSeconds"] > float(config["TRACKER_SHUTDOWN_GRACE_S"])
    services = [d for d in docs if d["kind"] == "Service"]
    assert any(s["spec"].get("clusterIP") == "None" for s in services)  # round_robin DNS
    for s in services:
        assert s["spec"]["ports"][0]["port"] == port


def test_dockerfile_matches_the_package() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert 'ENTRYPOINT ["tracker-server"]' in text
    assert "tracker-server" in project["project"]["scripts"]
    for package in ("tracker_server", "tracker_client", "bench"):
        assert f"COPY {package} ./{package}" in text
    assert "USER tracker" in text  # the embedded PostgreSQL will not run as root
    assert f"TRACKER_LISTEN=0.0.0.0:{Settings().listen.rsplit(':', 1)[1]}" in text
