"""A real single-node SLURM cluster for tests: munged, slurmctld and slurmd from the
distribution's packages (Debian: ``slurm-wlm munge``), every path under one temporary
directory, ports picked free, so it never touches /etc/slurm or a cluster already
running on the machine. The daemons run as root (``SlurmUser=root``); munged runs as
the ``munge`` user, which refuses anything else."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED",
                          "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"})

_CONF = """\
ClusterName=trackertest
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmdUser=root
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmdSpoolDir={root}/spool
StateSaveLocation={root}/state
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
Epilog={epilog}
ReturnToService=2
KillWait=2
MinJobAge=600
GresTypes=gpu
NodeName={host} CPUs=2 RealMemory=2000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def short_hostname() -> str:
    """``hostname -s``: what slurmd calls this node."""
    return subprocess.run(["hostname", "-s"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SlurmError(RuntimeError):
    """The cluster did not come up, or a job did not reach the expected state."""


class SlurmCluster:
    """munged + slurmctld + slurmd in a temporary directory."""

    def __init__(self, epilog: Path) -> None:
        # Not under pytest's tmp dirs: those are 0700 root, and munged (user munge)
        # must reach its socket directory.
        self.root = Path(tempfile.mkdtemp(prefix="tracker-slurm-"))
        self.root.chmod(0o755)
        self.host = short_hostname()
        self.conf = self.root / "slurm.conf"
        self.work = self.root / "work"
        self.epilog_log = self.root / "epilog.log"
        self._epilog = epilog

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> None:
        """Start the daemons and wait until the node is idle."""
        munge_dir, run_dir = self.root / "munge", self.root / "munge-run"
        for d in (munge_dir, run_dir, self.root / "spool", self.root / "state", self.work):
            d.mkdir()
        munge_dir.chmod(0o700)
        run_dir.chmod(0o755)  # munged insists that everyone may reach its socket
        shutil.chown(munge_dir, "munge", "munge")
        shutil.chown(run_dir, "munge", "munge")
        self.work.chmod(0o777)
        socket_path = run_dir / "munge.socket"
        subprocess.run(["mungekey", "--create", "--keyfile", str(munge_dir / "munge.key")],
                       user="munge", check=True, capture_output=True, timeout=30)
        subprocess.run(
            ["munged", f"--socket={socket_path}", f"--key-file={munge_dir / 'munge.key'}",
             f"--pid-file={run_dir / 'munged.pid'}", f"--log-file={munge_dir / 'munged.log'}",
             f"--seed-file={munge_dir / 'munged.seed'}"],
            user="munge", check=True, capture_output=True, timeout=30,
        )
        self.pid_files = {"munged": run_dir / "munged.pid",
                          "slurmctld": self.root / "slurmctld.pid",
                          "slurmd": self.root / "slurmd.pid"}
        # Two stand-in GPUs (harmless character devices; task/none binds nothing), so
        # jobs may ask for --gpus and SLURM sets its SLURM_*GPUS* variables.
        (self.root / "gres.conf").write_text(
            f"NodeName={self.host} Name=gpu File=/dev/null,/dev/zero\n")
        self.configure_epilog()
        self.conf.write_text(_CONF.format(
            host=self.host, ctld_port=_free_port(), slurmd_port=_free_port(),
            munge_socket=socket_path, root=self.root, epilog=self._epilog))
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([daemon, "-f", str(self.conf)], env=self.env(), check=True,
                           capture_output=True, timeout=30)
        deadline = time.monotonic() + timeout
        while True:
            state = self.run("sinfo", "-h", "-n", self.host, "-o", "%T", check=False)
            if state.returncode == 0 and state.stdout.strip() == "idle":
                return
            if time.monotonic() > deadline:
                raise SlurmError(f"node not idle after {timeout}s: {state.stdout!r} "
                                 f"{state.stderr!r}\n{self.logs()}")
            time.sleep(0.2)

    def stop(self, timeout: float = 15) -> None:
        """Stop the daemons by the pids in their pid files, then remove the directory."""
        pids = []
        for daemon in ("slurmd", "slurmctld", "munged"):
            path = getattr(self, "pid_files", {}).get(daemon)
            if path is None or not path.exists():
                continue
            try:
                pid = int(path.read_text().split()[0])
                os.kill(pid, signal.SIGTERM)
                pids.append(pid)
            except (ValueError, ProcessLookupError):
                continue
        deadline = time.monotonic() + timeout
        for pid in pids:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

    def configure_epilog(self, **env: str) -> None:
        """Write the epilog's settings (tracker-epilog.env beside slurm.conf, where
        deploy/slurm/epilog.sh looks); it reads them at every job end."""
        env = {**env, "TRACKER_EPILOG_LOG": str(self.epilog_log)}
        (self.root / "tracker-epilog.env").write_text(
            "".join(f"{k}={v}\n" for k, v in env.items()))

    def logs(self) -> str:
        """The tails of the daemons' logs (for failure messages)."""
        parts = []
        for name in ("slurmctld.log", "slurmd.log", "epilog.log"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text().splitlines()[-20:]))
        return "\n".join(parts)

    # -- commands -------------------------------------------------------------------------

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for SLURM commands (and, through sbatch, the jobs)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("SLURM_", "TRACKER_"))}
        env["SLURM_CONF"] = str(self.conf)
        env.update(extra or {})
        return env

    def run(self, *argv: str, env: Mapping[str, str] | None = None, check: bool = True,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a SLURM command against this cluster."""
        proc = subprocess.run(list(argv), env=self.env(env), capture_output=True, text=True,
                              timeout=timeout, cwd=self.work)
        if check and proc.returncode != 0:
            raise SlurmError(f"{' '.join(argv)}: {proc.stderr.strip()}\n{self.logs()}")
        return proc

    def sbatch(self, *argv: str, env: Mapping[str, str] | None = None) -> str:
        """Submit; the job id."""
        return self.run("sbatch", "--parsable", *argv, env=env).stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as a dict."""
        out = self.run("scontrol", "show", "job", "-o", job_id).stdout
        fields: dict[str, str] = {}
        for word in out.split():
            key, _, value = word.partition("=")
            fields.setdefault(key, value)
        return fields

    def wait(self, job_id: str, states: frozenset[str] = FINAL_STATES,
             timeout: float = 60, **expect: str) -> dict[str, str]:
        """Poll until the job is in one of ``states`` (and not COMPLETING, so its epilog
        is done) and every ``expect`` field matches; the job record."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job.get("JobState") in states and all(job.get(k) == v for k, v in expect.items()):
                return job
            if time.monotonic() > deadline:
                raise SlurmError(f"job {job_id} not in {sorted(states)} {expect} after "
                                 f"{timeout}s: {job.get('JobState')}\n{self.output(job_id)}"
                                 f"\n{self.logs()}")
            time.sleep(0.2)

    def output(self, job_id: str) -> str:
        """The job's stdout/stderr file (sbatch's default slurm-<id>.out)."""
        path = self.work / f"slurm-{job_id}.out"
        return path.read_text() if path.exists() else ""


def _alive(pid: int) -> bool:
    """Running, and not a zombie: a daemon that forked away from us is reaped by
    whichever process adopted it, which may take its time."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status
