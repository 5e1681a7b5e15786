"""Real processes and real faults for the tests in ``tests/fault``.

- :class:`PrivatePostgres` (``processes.py``): a PostgreSQL of the test's own (the
  session's shared one must survive), which can be SIGKILLed, stopped with
  ``-m immediate``, frozen with SIGSTOP and started again on the same data.
- :class:`ServerProc` (``processes.py``): ``tracker-server`` as a process (stderr to a
  file, so a chatty server never blocks on a full pipe), with kill, SIGTERM,
  SIGSTOP/SIGCONT and RSS.
- :class:`FaultProxy` (``proxy.py``): a TCP proxy between clients and a server that
  passes bytes, blackholes them (stops forwarding without closing anything) or resets
  every connection (RST).
- :class:`Writer`: a training loop on ``tracker_client`` in a thread, logging
  deterministic values at a steady rate and remembering what it logged.
- :func:`check_run`: the one end-of-test check (``tests/fault/checks.py``), and
  :func:`record`, which writes a test's figures to ``$TRACKER_FAULT_RESULTS`` for
  ``docs/reliability.md`` (``scripts/fault_table.py`` renders them).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.client_support import fast
from tests.fault.checks import Logged, Report, check_points, check_summaries
from tests.fault.processes import PrivatePostgres, ServerProc
from tests.fault.proxy import FaultProxy

__all__ = [
    "RESULTS_ENV", "FaultProxy", "Outcome", "PrivatePostgres", "ServerProc", "Writer",
    "check_run", "closing_all", "merged_logged", "outcome", "record", "start_writers",
    "wait_progress", "wait_until",
]

RESULTS_ENV = "TRACKER_FAULT_RESULTS"

# -- writers -------------------------------------------------------------------------------

KEYS = ("loss", "acc", "lr")


def value_of(rank: int, key: int, step: int, attempt: int = 0) -> float:
    """The value a writer logs: distinct per point (no ties), reproducible."""
    return math.sin(step * 0.001 + rank * 1.7 + key * 0.31 + attempt * 0.05) * (key + 1) + (
        step * 1e-9)


class Writer(threading.Thread):
    """One training process: logs ``KEYS`` at ``steps_per_s`` until stopped, then closes
    its run and reports what it logged and whether it is all durable."""

    def __init__(self, address: str, run_key: str, rank: int, spool_dir: Path,
                 steps_per_s: float = 400.0, experiment: str = "faults",
                 first_step: int = 0, resume: bool = False, **options: Any) -> None:
        super().__init__(daemon=True, name=f"writer-{rank}")
        self.address = address
        self.run_key = run_key
        self.rank = rank
        self.spool_dir = spool_dir
        self.steps_per_s = steps_per_s
        self.experiment = experiment
        self.step = first_step
        self.resume = resume
        self.options = options
        self.stop_logging = threading.Event()
        self.logged: Logged = {(k, rank): {} for k in KEYS}
        self.tracker_run: Any = None
        self.run_id: str | None = None
        self.report: Any = None
        self.error: BaseException | None = None
        self.started_at = time.monotonic()
        self.slowest_log_s = 0.0
        """The longest single log() call so far (the training loop must never stall)."""

    def run_loop(self) -> None:
        import tracker_client

        opts = fast(self.spool_dir, **self.options)
        self.tracker_run = tracker_client.init(
            experiment=self.experiment, server=self.address, run_key=self.run_key,
            rank=self.rank, options=opts, resume=self.resume)
        period = 1.0 / self.steps_per_s
        next_at = time.monotonic()
        while not self.stop_logging.is_set():
            metrics = {k: value_of(self.rank, i, self.step) for i, k in enumerate(KEYS)}
            t0 = time.perf_counter()
            self.tracker_run.log(metrics, step=self.step)
            self.slowest_log_s = max(self.slowest_log_s, time.perf_counter() - t0)
            for k, v in metrics.items():
                self.logged[(k, self.rank)][self.step] = v
            self.step += 1
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def run(self) -> None:
        try:
            self.run_loop()
        except BaseException as exc:  # reported to the test
            self.error = exc

    @property
    def acked(self) -> int:
        """Points acknowledged so far."""
        run = self.tracker_run
        return int(run.stats.points_acked) if run is not None else 0

    @property
    def logged_points(self) -> int:
        """Points logged so far."""
        return sum(len(v) for v in self.logged.values())

    def finish(self, timeout: float) -> Any:
        """Stop logging, close the run within ``timeout``; the delivery report."""
        self.stop_logging.set()
        self.join(10)
        assert self.error is None, self.error
        self.report = self.tracker_run.close(timeout=timeout)
        self.run_id = self.tracker_run.run_id
        return self.report


def start_writers(address: str | Callable[[int], str], run_key: str, n: int, spool_root: Path,
                  **kwargs: Any) -> list[Writer]:
    """``n`` writers (ranks 0..n-1) of one run; ``address`` may differ per rank."""
    writers = []
    for rank in range(n):
        addr = address(rank) if callable(address) else address
        w = Writer(addr, run_key, rank, spool_root / f"rank{rank}", **kwargs)
        w.start()
        writers.append(w)
    wait_until(lambda: all(w.tracker_run is not None for w in writers), 30, "writers attached")
    return writers


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.05) -> float:
    """Poll until ``predicate``; seconds it took. Fails the test at ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started


def wait_progress(writers: list[Writer], timeout: float) -> float:
    """Seconds until every writer's acknowledged points pass what it had logged when
    called (its backlog delivered): the recovery time after a fault is cleared."""
    targets = [(w, w.logged_points) for w in writers]
    return wait_until(lambda: all(w.acked >= t for w, t in targets), timeout,
                      "writers to deliver their backlog")


def merged_logged(writers: list[Writer]) -> Logged:
    """What all writers logged."""
    out: Logged = {}
    for w in writers:
        out.update(w.logged)
    return out


@dataclass
class Outcome:
    """The figures of one fault test, as written to the results file."""

    fault: str
    injected: str
    writers: int
    points_logged: int
    points_stored: int
    duplicates: int
    missing: int
    recovery_s: float | None
    extra: dict[str, Any] = field(default_factory=dict)


def check_run(address: str, database_url: str, run_id: str, logged: Logged) -> Report:
    """The end-of-test check: per (run, key, rank) every logged point stored once with
    its value, nothing else, and the summaries equal to a recomputation over a read;
    fails the test with the problems found."""
    report = check_points(database_url, run_id, logged)
    problems = check_summaries(address, database_url, run_id)
    assert report.ok, report.problems
    assert not problems, problems
    return report


def record(outcome: Outcome) -> None:
    """Write the outcome to ``$TRACKER_FAULT_RESULTS/<fault>.json`` when that is set."""
    root = os.environ.get(RESULTS_ENV)
    if not root:
        return
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    name = "".join(c if c.isalnum() else "_" for c in outcome.fault).strip("_")
    (path / f"{name}.json").write_text(json.dumps(asdict(outcome), indent=2) + "\n")


@contextlib.contextmanager
def closing_all(*things: Any) -> Iterator[None]:
    """Close everything given (last first) when the block ends, whatever happens."""
    try:
        yield
    finally:
        for thing in reversed(things):
            with contextlib.suppress(Exception):
                thing.close()


def outcome(fault: str, injected: str, writers: list[Writer], report: Report,
            recovery_s: float | None, **extra: Any) -> Outcome:
    """An :class:`Outcome` from the writers and the check's report, recorded."""
    out = Outcome(fault, injected, len(writers), report.logged, report.stored,
                  report.duplicates, report.missing,
                  None if recovery_s is None else round(recovery_s, 2), extra)
    record(out)
    return out
