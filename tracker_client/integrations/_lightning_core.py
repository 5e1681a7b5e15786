"""What :class:`TrackerLogger` does, shared by ``lightning.pytorch`` and ``pytorch_lightning``.

The two packages ship distinct ``Logger`` base classes; each integration module mixes
this class into its own base, so the behaviour is written once.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import tracker_client
from tracker_client import _env
from tracker_client.integrations._params import flatten, numeric

RUN_KEY_ENV = "TRACKER_LIGHTNING_RUN_KEY"
"""Set by the launching process; Lightning's DDP launcher copies it to every rank."""

FINAL_STATUS = {"success": "finished", "finished": "finished", "failed": "failed",
                "interrupted": "killed", "killed": "killed"}
"""Lightning's ``finalize(status)`` words -> tracker run statuses."""

_created = itertools.count()


def shared_run_key() -> str:
    """The run key every rank of one Lightning job derives alike.

    torchrun and SLURM name the job (as for :func:`tracker_client.init`). Lightning's own
    DDP launcher does not: it re-runs the script once per extra device with a copy of the
    launching process's environment (``LOCAL_RANK`` >= 1 added). So the launching
    process picks a fresh base key and exports it as ``TRACKER_LIGHTNING_RUN_KEY``
    (with its pid); a rank started by that process reuses it. The i-th logger a process
    creates gets ``<base>-<i>`` (i >= 1): every rank runs the same script, so they agree.
    """
    index = next(_created)
    base = _env.default_run_key() or _launcher_key()
    return base if index == 0 else f"{base}-{index}"


def _launcher_key() -> str:
    inherited = os.environ.get(RUN_KEY_ENV, "")
    key, _, pid = inherited.rpartition(":")
    if key and pid.isdigit():
        launched_by_it = int(pid) == os.getppid() and _local_rank() > 0
        if launched_by_it or int(pid) == os.getpid():
            return key
    key = f"lightning-{uuid.uuid4().hex[:12]}"
    os.environ[RUN_KEY_ENV] = f"{key}:{os.getpid()}"
    return key


def _local_rank() -> int:
    value = os.environ.get("LOCAL_RANK", "")
    return int(value) if value.isdigit() else 0


class TrackerLoggerCore:
    """Logger methods over one tracker :class:`~tracker_client.Run` per process.

    The run is created lazily, at the first use after the strategy has set the global
    rank (Lightning touches ``experiment`` in its setup hook), so each rank attaches with
    its own rank to the shared run key.
    """

    _global_rank: Callable[[], int]

    def __init__(
        self,
        experiment: str | None = None,
        name: str | None = None,
        run_key: str | None = None,
        tags: Mapping[str, str] | None = None,
        resume: bool = False,
        all_ranks: bool = True,
        prefix: str = "",
        log_checkpoints: bool = True,
        hash_checkpoints: bool = False,
        **init_kwargs: Any,
    ) -> None:
        super().__init__()
        self._experiment_name = _env.experiment_name(experiment)
        self._run_name = name
        self._run_key = run_key or shared_run_key()
        self._tags = dict(tags or {})
        self._resume = resume
        self._all_ranks = all_ranks
        self._prefix = prefix
        self._log_checkpoints = log_checkpoints
        self._hash_checkpoints = hash_checkpoints
        self._init_kwargs = init_kwargs
        self._run: tracker_client.Run | None = None
        self._run_pid = 0
        self._finalized: str | None = None
        self._run_id: str | None = None

    # -- the run -----------------------------------------------------------------------

    @property
    def run_key(self) -> str:
        """The run key shared by every rank."""
        return self._run_key

    def _attach(self) -> tracker_client.Run:
        run = self._run
        if run is not None and self._run_pid == os.getpid():
            return run
        # A new process (spawned or forked rank) gets its own writer: background threads
        # do not survive a fork and a Run is never pickled.
        run = tracker_client.init(
            experiment=self._experiment_name, name=self._run_name, run_key=self._run_key,
            tags=self._tags, resume=self._resume, rank=self._global_rank(),
            **self._init_kwargs,
        )
        # A logger reused after finalize() (fit, then test) attaches again without
        # starting another attempt.
        self._resume = False
        self._run, self._run_pid, self._finalized = run, os.getpid(), None
        return run

    def _logs_here(self) -> bool:
        return self._all_ranks or self._global_rank() == 0

    # -- Logger API --------------------------------------------------------------------

    @property
    def experiment(self) -> tracker_client.Run:
        """The tracker :class:`~tracker_client.Run` this process writes to."""
        return self._attach()

    @property
    def name(self) -> str:
        """The experiment name."""
        return self._experiment_name

    @property
    def version(self) -> str:
        """The run id (the run key while the server has not been reached)."""
        if self._run_id is None:
            run = self._attach()
            self._run_id = run.run_id
            return run.run_id or run.run_key
        return self._run_id

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Record hyper-parameters as params, nested keys flattened with dots
        (``{"optim": {"lr": 1e-3}}`` -> ``optim.lr``); rank 0 only (every rank holds
        the same values and params are immutable)."""
        if self._global_rank() != 0:
            return
        flat = flatten(params)
        if flat:
            self._attach().log_params(flat)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record scalar metrics at ``step`` (non-numbers are left out)."""
        if not self._logs_here():
            return
        values = {}
        for key, value in metrics.items():
            number = numeric(value)
            if number is not None:
                values[self._prefix + key] = number
        if values:
            self._attach().log(values, step=step)

    def finalize(self, status: str) -> None:
        """End this process's writer: ``success`` -> finished, ``failed`` -> failed,
        ``interrupted`` -> killed (the status is set by rank 0 only)."""
        run = self._run
        if run is None or self._run_pid != os.getpid() or self._finalized is not None:
            return
        final = FINAL_STATUS.get(status, "finished")
        self._finalized = final
        self._run_id = self._run_id or run.run_id
        run.finish(final)
        self._run = None

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Record the checkpoint just saved as an artifact at the step it was saved
        (with ``log_checkpoints``), and tag the run with the best and last checkpoint
        paths (rank 0: Lightning calls this on the global-zero rank only)."""
        if self._global_rank() != 0:
            return
        run = self._attach()
        if self._log_checkpoints:
            self._record_checkpoint(run, checkpoint_callback)
        tags = {}
        for attr, tag in (("best_model_path", "checkpoint.best"),
                          ("last_model_path", "checkpoint.last")):
            path = getattr(checkpoint_callback, attr, "")
            if path:
                tags[tag] = str(path)
        if tags:
            run.set_tags(tags)

    def _record_checkpoint(self, run: tracker_client.Run, callback: Any) -> None:
        # ModelCheckpoint._save_checkpoint sets these two just before calling the
        # loggers; without them (another checkpoint callback) the last path is recorded
        # without a step.
        path = getattr(callback, "_last_checkpoint_saved", "") or getattr(
            callback, "last_model_path", "")
        if not path:
            return
        saved_at = getattr(callback, "_last_global_step_saved", None)
        step = int(saved_at) if isinstance(saved_at, int) else None
        metadata = {"source": "lightning"}
        monitor = getattr(callback, "monitor", None)
        score = numeric(getattr(callback, "current_score", None))
        if monitor:
            metadata["monitor"] = str(monitor)
        if score is not None:
            metadata["score"] = repr(score)
        if path == getattr(callback, "last_model_path", None):
            # save_last rewrites one file (last.ckpt) at every save: one record without a
            # step, replaced each time, keeps "the checkpoint of step N" records true.
            metadata["last"] = "true"
            if step is not None:
                metadata["step"] = str(step)
            step = None
        # The step as Lightning saved it, None included (log_artifact would default a
        # missing one to the last step logged).
        run._record_artifact(str(path), "checkpoint", step, self._hash_checkpoints, metadata)

    def __getstate__(self) -> dict[str, Any]:
        # ddp_spawn pickles the logger into each rank: the key travels, the Run does not.
        state = dict(self.__dict__)
        state["_run"] = None
        state["_run_pid"] = 0
        return state
