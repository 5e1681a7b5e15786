"""Reproducibility metadata recorded at init: code, machine, software, scheduler.

Every probe is best-effort and bounded: a missing git, a hung nvidia driver or an
odd environment must never stop a training job from starting.
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

KEY_PACKAGES = ("torch", "numpy", "jax", "tensorflow", "transformers", "lightning",
                "accelerate", "deepspeed", "scikit-learn", "tracker")
_SLURM_VARS = {"SLURM_JOB_ID": "job_id", "SLURM_JOB_NAME": "job_name",
               "SLURM_JOB_PARTITION": "partition", "SLURM_JOB_NODELIST": "node_list",
               "SLURM_NNODES": "nodes", "SLURM_NTASKS": "tasks", "SLURM_ARRAY_JOB_ID":
               "array_job_id", "SLURM_ARRAY_TASK_ID": "array_task_id",
               "SLURM_RESTART_COUNT": "restart_count", "SLURM_CLUSTER_NAME": "cluster",
               # What the job asked for (--gpus, --gpus-per-node/-task, --gres) and the
               # GPU indices SLURM gave it: results depend on the hardware they ran on.
               "SLURM_GPUS": "gpus", "SLURM_GPUS_PER_NODE": "gpus_per_node",
               "SLURM_GPUS_PER_TASK": "gpus_per_task", "SLURM_JOB_GPUS": "job_gpus",
               "SLURM_GPUS_ON_NODE": "gpus_on_node", "SLURM_CPUS_PER_TASK": "cpus_per_task"}


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                             timeout=2, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_info(cwd: Path | None = None) -> dict[str, Any]:
    """Commit, branch, dirty flag and remote of the working directory's repository."""
    where = cwd or Path.cwd()
    commit = _git(["rev-parse", "HEAD"], where)
    if commit is None:
        return {}
    status = _git(["status", "--porcelain", "--untracked-files=no"], where)
    info: dict[str, Any] = {
        "commit": commit,
        "branch": _git(["rev-parse", "--abbrev-ref", "HEAD"], where) or "",
        "dirty": bool(status),
    }
    remote = _git(["config", "--get", "remote.origin.url"], where)
    if remote:
        info["remote"] = remote
    return info


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that usually matter for a result."""
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return out


def slurm_info() -> dict[str, str]:
    """SLURM job id, partition, node list, task count, requested GPUs, ... when running
    under SLURM."""
    return {short: os.environ[var] for var, short in _SLURM_VARS.items() if os.environ.get(var)}


def gpu_info() -> list[dict[str, Any]]:
    """GPU models and memory via nvidia-ml-py (``pynvml``) when it finds GPUs."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver: a CPU machine with the package installed
        return []
    gpus = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append({"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                         "memory_bytes": int(mem.total)})
    except Exception:  # a half-working driver: report what was found
        pass
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    return gpus


def collect(seed: int | None = None, rank: int = 0, world_size: int | None = None
            ) -> dict[str, Any]:
    """Everything above as one JSON-able dict (stored in the run's metadata)."""
    meta: dict[str, Any] = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "packages": package_versions(),
        "command": [sys.executable, *sys.argv],
        "cwd": os.getcwd(),
        "rank": rank,
    }
    if world_size is not None:
        meta["world_size"] = world_size
    git = git_info()
    if git:
        meta["git"] = git
    slurm = slurm_info()
    if slurm:
        meta["slurm"] = slurm
    gpus = gpu_info()
    if gpus:
        meta["gpus"] = gpus
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        meta["cuda_visible_devices"] = visible
    if seed is not None:
        meta["seed"] = seed
    return meta
