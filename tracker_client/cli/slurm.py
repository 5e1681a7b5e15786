"""``tracker slurm epilog``: end the runs of a SLURM job when the job ends.

Run by the cluster's ``Epilog`` (``deploy/slurm/epilog.sh``) as root, with the job's
``SLURM_JOB_ID`` and ``SLURM_JOB_EXIT_CODE`` (a raw wait status: exit 3 is 768, a
signal is its number). The outcome:

- requeued (``scontrol requeue``, preemption with requeue) -> the attempt is ``killed``;
  ``init(resume=True)`` in the next start sets the run running again
- a signal (``scancel``, time limit, OOM kill of the batch script) -> ``killed``
- a non-zero exit -> ``failed``
- otherwise -> ``finished``

Only runs still ``running`` change status: the server never changes a terminal status
(FAILED_PRECONDITION), so a run rank 0 already marked finished stays finished even if
the job then failed. Every run of the job gets the tags ``slurm.outcome`` and
``slurm.exit_code`` (SLURM's ``exit:signal``), so that disagreement stays visible.

SLURM hands the epilog a zero exit code for a cancelled or requeued job; the real
outcome is in the controller's record, so one ``scontrol show job`` call is made (skip
it with ``--no-scontrol``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tracker_client.cli._common import RUN_STATUS, Client, CliError, command_parser
from tracker_proto.v1 import experiments_pb2 as ex

_JOB_ID = re.compile(r"^[0-9A-Za-z_.+-]{1,64}$")
STATUS_NUMBER = {"finished": ex.RUN_STATUS_FINISHED, "failed": ex.RUN_STATUS_FAILED,
           "killed": ex.RUN_STATUS_KILLED}
_KILLED_STATES = frozenset({"CANCELLED", "TIMEOUT", "PREEMPTED", "DEADLINE", "NODE_FAIL",
                            "OUT_OF_MEMORY", "BOOT_FAIL"})
_KILLED_REASONS = frozenset({"TimeLimit", "Deadline", "OutOfMemory", "NodeDown"})
SEARCH_BATCH = 100
"""Experiments per SearchRuns call (the server's limit)."""


@dataclass(frozen=True)
class JobOutcome:
    """How a SLURM job ended, and the run status that follows."""

    status: str
    """``finished``, ``failed`` or ``killed``."""
    outcome: str
    """``completed``, ``failed``, ``killed`` or ``requeued`` (the ``slurm.outcome`` tag)."""
    exit_code: int
    signal: int

    @property
    def exit_text(self) -> str:
        """SLURM's ``exit:signal`` notation."""
        return f"{self.exit_code}:{self.signal}"


def parse_scontrol(text: str) -> dict[str, str]:
    """``scontrol show job -o ID`` (one line of ``Key=Value`` words) -> dict."""
    fields: dict[str, str] = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


def _requeued(job: Mapping[str, str], now: datetime) -> bool:
    """A requeued job is pending again while its epilog runs: its restart count went up,
    its run time restarted from zero and its end time is unknown or projected into the
    future (start + time limit) rather than past."""
    if job.get("Restarts", "0") == "0" or job.get("RunTime") != "00:00:00":
        return False
    try:
        return datetime.fromisoformat(job.get("EndTime", "")) > now
    except ValueError:  # "Unknown": no time limit
        return True


def job_outcome(raw_status: int, job: Mapping[str, str] | None = None,
                now: datetime | None = None) -> JobOutcome:
    """The outcome from the epilog's raw wait status and the controller's job record
    (``now``: the controller's local time, as its record is written in)."""
    signal, exit_code = raw_status & 0x7F, (raw_status >> 8) & 0xFF
    job = job or {}
    recorded = job.get("ExitCode", "")
    if re.fullmatch(r"\d+:\d+", recorded):
        rec_exit, rec_signal = (int(v) for v in recorded.split(":"))
        exit_code, signal = exit_code or rec_exit, signal or rec_signal
    if _requeued(job, now or datetime.now()):
        return JobOutcome("killed", "requeued", exit_code, signal)
    if (signal or job.get("JobState") in _KILLED_STATES
            or job.get("Reason") in _KILLED_REASONS):
        return JobOutcome("killed", "killed", exit_code, signal)
    if exit_code:
        return JobOutcome("failed", "failed", exit_code, signal)
    return JobOutcome("finished", "completed", exit_code, signal)


def check_job_id(job_id: str) -> str:
    """A SLURM job id usable in a filter string (digits, ``_`` of array jobs, ...)."""
    job_id = job_id.strip()
    if not _JOB_ID.match(job_id):
        raise CliError(f"not a SLURM job id: {job_id!r}")
    return job_id


def job_filter(job_id: str) -> str:
    """The SearchRuns filter clause matching the runs of one job."""
    return f'slurm_job_id = "{check_job_id(job_id)}"'


def all_experiment_ids(client: Client) -> list[str]:
    """Every experiment id, archived ones included."""
    statuses = [ex.EXPERIMENT_STATUS_CREATED, ex.EXPERIMENT_STATUS_ACTIVE,
                ex.EXPERIMENT_STATUS_ARCHIVED]
    req = ex.ListExperimentsRequest(statuses=statuses, page_size=1000)
    found = client.paginate(client.experiments.ListExperiments, req,
                            lambda page: page.experiments, 10**9)
    return [e.experiment_id for e in found]


def search_everywhere(client: Client, filter_text: str, limit: int) -> list[Any]:
    """Runs matching ``filter_text`` in any experiment, newest first.

    SearchRuns takes at most 100 experiments per call, so this is one ListExperiments
    walk plus one SearchRuns per 100 experiments: fine for a CLI call or one epilog per
    job, not for a hot path."""
    ids = all_experiment_ids(client)
    runs: list[Any] = []
    for start in range(0, len(ids), SEARCH_BATCH):
        req = ex.SearchRunsRequest(experiment_ids=ids[start:start + SEARCH_BATCH],
                                   filter=filter_text, page_size=min(max(limit, 1), 1000))
        runs += client.paginate(client.experiments.SearchRuns, req, lambda page: page.runs, limit)
    runs.sort(key=lambda r: (r.created_at.seconds, r.created_at.nanos), reverse=True)
    return runs[:limit]


def end_job_runs(client: Client, job_id: str, outcome: JobOutcome) -> list[str]:
    """Apply ``outcome`` to every run of the job; one line per run saying what happened."""
    lines = []
    for run in search_everywhere(client, job_filter(job_id), 10_000):
        client.call(client.experiments.SetTags, ex.SetTagsRequest(
            run_id=run.run_id,
            tags={"slurm.outcome": outcome.outcome, "slurm.exit_code": outcome.exit_text}))
        before = RUN_STATUS.get(run.status, "?")
        if run.status == ex.RUN_STATUS_RUNNING:
            req = ex.FinishRunRequest(run_id=run.run_id, status=STATUS_NUMBER[outcome.status])
            req.ended_at.FromDatetime(datetime.now(UTC))
            client.call(client.experiments.FinishRun, req)
            lines.append(f"run {run.run_id} ({run.name}): running -> {outcome.status}")
        else:
            lines.append(f"run {run.run_id} ({run.name}): {before} (kept; job "
                         f"{outcome.outcome}, exit {outcome.exit_text})")
    return lines


def _scontrol_job(job_id: str, timeout: float) -> dict[str, str]:
    """The controller's record of the job; empty when scontrol is missing or fails."""
    try:
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                             text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return {}
    return parse_scontrol(out.stdout) if out.returncode == 0 else {}


def register(sub: Any) -> None:
    """Add ``slurm epilog``."""
    parser = command_parser(sub, "slurm", "SLURM integration (the cluster's epilog)")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    epilog = command_parser(actions, "epilog",
                            "finish, fail or kill the runs of a SLURM job that ended")
    epilog.add_argument("--job-id", default=os.environ.get("SLURM_JOB_ID"),
                        help="the job (env SLURM_JOB_ID)")
    epilog.add_argument("--exit-code", type=int,
                        default=int(os.environ.get("SLURM_JOB_EXIT_CODE") or 0),
                        help="raw wait status of the batch script (env SLURM_JOB_EXIT_CODE)")
    epilog.add_argument("--no-scontrol", action="store_true",
                        help="do not ask the controller (scontrol show job) for the outcome")
    epilog.set_defaults(func=run_epilog)


def run_epilog(args: argparse.Namespace, client: Client) -> int:
    """End the job's runs; prints what changed."""
    if not args.job_id:
        raise CliError("no job id: pass --job-id or set SLURM_JOB_ID")
    job_id = check_job_id(args.job_id)
    record = {} if args.no_scontrol else _scontrol_job(job_id, min(client.timeout, 10.0))
    outcome = job_outcome(args.exit_code, record)
    lines = end_job_runs(client, job_id, outcome)
    print(f"slurm job {job_id}: {outcome.outcome} (exit {outcome.exit_text}), "
          f"{len(lines)} run(s)")
    for line in lines:
        print(line)
    return 0
