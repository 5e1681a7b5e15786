"""The training-script API: ``init()`` returns a ``Run``; ``run.log()`` never blocks."""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from tracker_client import _env, _metadata
from tracker_client._artifacts import ArtifactRecorder
from tracker_client._batcher import Batcher, as_series
from tracker_client._clock import wall_now_ns, wall_ns_from_seconds
from tracker_client._delivery import Delivery
from tracker_client._env import MODES
from tracker_client._meta import Mode, SpoolMeta
from tracker_client._options import Options
from tracker_client._recover import deliver_spool, recover_orphans
from tracker_client._rpc import (
    RETRYABLE_CODES,
    RunRef,
    create_run,
    make_channel,
    status_number,
)
from tracker_client._sender_link import (
    SENDER_SUFFIX,
    SenderCounters,
    SenderLink,
    link_spool_exists,
)
from tracker_client._spool import Spool
from tracker_client._stats import DeliveryStats, RunStats
from tracker_client._summary import RunSummary, check_goal, check_key
from tracker_client._sysmetrics import SystemMetrics
from tracker_client._tail import Tail
from tracker_client.integrations._params import flatten

log = logging.getLogger("tracker_client")

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # Reconnect quickly after a server restart: the stream's own back-off paces retries.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
    # With a DNS name that resolves to several replicas (a Kubernetes headless Service,
    # "dns:///tracker-headless...:50051"), spread streams over all of them.
    ("grpc.lb_policy_name", "round_robin"),
]


class TrackerError(RuntimeError):
    """A non-retryable error from the server at init (bad name, clashing param, ...)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class DeliveryReport:
    """What ``flush``/``close``/``finish`` could not make durable within the timeout."""

    durable: bool
    """Everything logged (and every param/tag/status change) is acknowledged; a change
    the server refused for good counts as answered and is listed in ``ops_failed``."""
    points_pending: int
    """Points logged but not yet acknowledged; they stay in the spool."""
    batches_pending: int
    """Spooled batches not yet acknowledged."""
    ops_pending: int
    """Params/tags/status changes not yet delivered."""
    oldest_unacked_age_s: float | None
    """Age of the oldest unacknowledged batch, None when there is none."""
    spool_path: str
    """Where undelivered data waits (for the next start or ``tracker sync``)."""
    state: str
    """Delivery state (see :class:`RunStats`)."""
    ops_failed: tuple[str, ...] = ()
    """Params/tags/status changes the server refused for good, one message each (e.g.
    ``params not applied: ALREADY_EXISTS: ...``); they are not retried."""


class Run:
    """One writer (process / rank) attached to a run. Create it with :func:`init`."""

    def __init__(self, *, spool: Spool, delivery: Delivery, channel: grpc.Channel | None,
                 options: Options, rank: int, mode: Mode, exit_timeout_s: float,
                 sender: SenderLink | None = None,
                 recover: Callable[[Path, threading.Event], bool] | None = None,
                 make_sender: Callable[[], SenderLink] | None = None) -> None:
        self._spool = spool
        self._delivery = delivery
        self._channel = channel
        self.rank = rank
        """Distributed rank of this process."""
        self.primary = rank == 0
        """Only the primary rank (0) changes the run's status."""
        self.mode: Mode = mode
        self._exit_timeout_s = exit_timeout_s
        self.writer_id = spool.meta.writer_id
        """Stable identity of this writer (its seqs are exactly-once per writer id)."""
        self.run_key = spool.meta.run_key
        """Idempotency key every rank of the job shares."""
        self._stats = delivery.stats
        self._step = -1
        self._internal_logged = 0
        self._queue_dropped = 0
        self._closed = False
        self._close_lock = threading.Lock()
        self._batcher = Batcher(spool, options, self._stats, self._on_batch)
        self._records = self._batcher.records
        self._tail = spool.tail  # log() writes here first: it survives a kill (see _tail)
        self._wakeup = self._batcher.wakeup
        self._max_queue = options.max_queue_records
        self._batch_points = options.batch_points
        self._max_batch_points = options.max_batch_points
        self._wall_resolution = options.wall_time_resolution_ns
        self._recovery_stop = threading.Event()
        self.summary = RunSummary(self._op)
        """User summary values: ``run.summary["test/acc"] = 0.93`` (see RunSummary)."""
        self._sys: SystemMetrics | None = None
        self._artifacts = ArtifactRecorder(delivery.control.submit, rank)
        self._sender = sender
        self._sender_points = 0
        """Points log() wrote into the sender process's tail."""
        self._sender_settled = False
        """The sender process died and its spool was delivered from here since."""
        self._recover = recover
        self._make_sender = make_sender
        if make_sender is not None:  # sender="auto"
            self._batcher.on_behind = self._sender_wanted
        self._batcher.start()
        if sender is not None:
            self._start_sender(sender)
        delivery.start()
        if options.system_metrics_interval_s:
            self._sys = SystemMetrics(options.system_metrics_interval_s, self._log_system, rank)
            self._sys.start()
        atexit.register(self._atexit)

    # -- identity ----------------------------------------------------------------------

    @property
    def run_id(self) -> str | None:
        """Server id of the run; None while offline (the server was never reached)."""
        ref = self._delivery.ref
        return ref.run_id if ref else None

    @property
    def attempt(self) -> int | None:
        """Attempt number of the run this writer logs under (None while offline)."""
        ref = self._delivery.ref
        return ref.attempt if ref else None

    @property
    def spool_path(self) -> Path:
        """Directory of this writer's on-disk spool."""
        return self._spool.path

    def wait_attached(self, timeout: float) -> bool:
        """Wait until the run exists on the server (useful after an offline start)."""
        return self._delivery.attached.wait(timeout)

    # -- logging -----------------------------------------------------------------------

    def log(self, metrics: Mapping[str, Any], step: int | None = None,
            wall_time: float | None = None) -> None:
        """Record scalar metrics at ``step`` (previous step + 1 when omitted).

        Never blocks on the network or the disk: the values are converted to float
        here (so later mutation of the caller's objects cannot change them) and
        queued; a background thread batches, spools and sends them. Values may be
        Python numbers, numpy scalars, 0-d arrays or anything ``float()`` accepts.
        ``wall_time`` (seconds since the epoch, as ``time.time()``) stamps the points
        with another time than now, e.g. when replaying recorded events.
        """
        if step is None:
            step = self._step + 1
        self._step = step
        keys = tuple(metrics)
        n = len(keys)
        if wall_time is None:  # wall_now_ns, inlined: this is the training thread's path
            res = self._wall_resolution
            wall_ns = time.time_ns() // res * res
        else:
            wall_ns = wall_ns_from_seconds(wall_time)
        # The tail holds the record as bytes: nothing for the GC to track, and a kill
        # cannot lose it. It converts the values itself (float() semantics). Keys it
        # cannot hold (not str) take the in-memory queue.
        tail = self._tail
        written = (tail.log_scalars(keys, metrics.values(), step, wall_ns)
                   if tail is not None else -1)
        stats = self._stats
        stats.points_logged += n
        if written == 0:  # the batcher is a whole tail behind: drop, counted
            self._queue_dropped += n
            return
        if written < 0:
            values = tuple([float(v) for v in metrics.values()])
            if len(self._records) >= self._max_queue:
                self._queue_dropped += n
                return
            self._records.append((keys, values, step, wall_ns))
        elif tail is not None and tail.shared:  # the sender process polls its tail
            self._sender_points += n
            return
        if not self._wakeup.is_set() and (
            self._batcher.idle
            or stats.points_logged - self._batcher.consumed_points >= self._batch_points
        ):
            self._wakeup.set()

    def log_series(self, key: str, steps: Any, values: Any) -> None:
        """Record a whole series (numpy arrays or sequences of one length) in one call."""
        s, v = as_series(steps, values)
        n = int(s.shape[0])
        if not n:
            return
        wall_ns = wall_now_ns(self._wall_resolution)
        self._stats.points_logged += n
        tail = self._tail
        written = (tail.log_series(key, s, v, wall_ns, self._max_batch_points)
                   if tail is not None else -1)
        if written == 0:
            self._queue_dropped += n
            return
        if written < 0:  # too big for the tail: queued in memory (spooled within ms)
            self._records.append((key, s, v, wall_ns))
        elif tail is not None and tail.shared:
            self._sender_points += n
        self._step = max(self._step, int(s.max()))
        if not self._wakeup.is_set():
            self._wakeup.set()

    def _log_system(self, metrics: dict[str, float], step: int) -> None:
        # From the system-metrics thread: its own counter, so the training thread's
        # counters are written by one thread only.
        self._records.append((tuple(metrics), list(metrics.values()), step,
                              wall_now_ns(self._wall_resolution)))
        self._internal_logged += len(metrics)
        self._wakeup.set()

    def _start_sender(self, link: SenderLink) -> None:
        self._sender = link
        link.on_ready = self._sender_ready
        link.on_lost = self._sender_lost
        self._delivery.on_attach.append(link.attach)
        ref = self._delivery.ref
        if ref is not None and self._delivery.attached.is_set():
            link.attach(ref)  # twice if an attach races this: the process takes one
        try:
            link.start()
        except OSError as exc:  # no interpreter to start (an embedded Python, ...)
            link.error = f"cannot start the sender process: {exc}"
            log.warning("tracker_client: %s; log() stays in this process", link.error)

    def _sender_wanted(self) -> None:
        # From the batcher (sender="auto"): a sixteenth of the tail waits, the threads do
        # not keep up with this loop. Started once, from a thread of its own.
        make = self._make_sender
        if make is None or self._closed or self._sender is not None:
            return
        self._make_sender = None
        log.info("tracker_client: log() outpaces the in-process sender; starting a "
                 "sender process (Options.sender='auto')")
        threading.Thread(target=lambda: self._start_sender(make()),
                         name="tracker-sender-start", daemon=True).start()

    def _sender_ready(self, tail: Tail) -> None:
        # From the link's thread: the next log() goes to the sender process's tail.
        if not self._closed:
            self._tail = tail

    def _sender_lost(self) -> None:
        # The sender process died (or never started): log() goes back to this
        # process's own tail; what the process had not delivered is delivered from here
        # (exactly once: its spool's seqs and tail state say what was sent).
        self._tail = self._spool.tail
        link = self._sender
        if self._recover is None or self._closed or link is None:
            return  # offline: the spool waits for `tracker sync` like any other
        recover = self._recover

        def deliver() -> None:
            time.sleep(0.2)  # a log() that read the old tail has finished writing it
            if link.tail is not None:
                link.tail.close()
            if not link_spool_exists(link) or recover(link.spool_path, self._recovery_stop):
                self._sender_settled = True

        threading.Thread(target=deliver, name="tracker-sender-recover", daemon=True).start()

    def _on_batch(self) -> None:
        if self._delivery.sender is not None:
            self._delivery.sender.wake()

    # -- params, tags, status ----------------------------------------------------------

    def log_params(self, params: Mapping[str, Any], timeout: float = 0.0) -> DeliveryReport:
        """Record hyper-parameters (immutable once set). Persisted at once, delivered
        in the background; waits up to ``timeout`` seconds for the server.

        Nested mappings become dotted keys as in ``init(config=...)``."""
        return self._op({"op": "params", "values": flatten(params)}, timeout)

    def set_tags(self, tags: Mapping[str, str], timeout: float = 0.0) -> DeliveryReport:
        """Set (or overwrite) tags; delivered like :meth:`log_params`."""
        return self._op({"op": "tags", "values": {k: str(v) for k, v in tags.items()}},
                        timeout)

    def define_metric(self, key: str, goal: str, timeout: float = 0.0) -> DeliveryReport:
        """Record that ``goal`` (``"min"``: smaller is better, ``"max"``) holds for
        ``key``: rankings (``Api.best``, ``tracker best``, GetBestRuns) and comparisons
        use it when the caller gives no mode. Delivered like :meth:`log_params`; a
        later definition of the same key replaces the earlier one."""
        return self._op({"op": "goals", "values": {check_key(key, "metric key"):
                                                   check_goal(goal)}}, timeout)

    def _op(self, op: dict[str, Any], timeout: float) -> DeliveryReport:
        ticket = self._delivery.control.submit(op)
        if timeout > 0:
            self._delivery.control.wait(ticket, time.monotonic() + timeout)
        return self._report()

    # -- artifacts ---------------------------------------------------------------------

    def log_artifact(self, path_or_uri: str | os.PathLike[str], kind: str = "checkpoint",
                     step: int | None = None, compute_hash: bool = False,
                     metadata: Mapping[str, Any] | None = None) -> None:
        """Record where a checkpoint, model, data set or other file is (never uploaded).

        ``path_or_uri``: a path on shared storage (made absolute) or a URI (``s3://``,
        ``gs://``, ``file://`` ...; credentials in it are refused with ValueError).
        ``kind``: ``checkpoint``, ``model``, ``dataset`` or ``other``. ``step``: the
        training step it belongs to; by default a checkpoint gets the last step logged
        (none before the first), other kinds none. Never blocks: the file's size and,
        with ``compute_hash``, its SHA-256 are read by a background thread; the record
        then goes through the spool like params, so it survives outages and offline
        mode (``tracker sync``), and is stored once per (run, uri, step).
        """
        if step is None and kind == "checkpoint" and self._step >= 0:
            step = self._step
        self._record_artifact(path_or_uri, kind, step, compute_hash, metadata)

    def _record_artifact(self, path_or_uri: str | os.PathLike[str], kind: str,
                         step: int | None, compute_hash: bool,
                         metadata: Mapping[str, Any] | None) -> None:
        # ``step`` taken as given (None: no step), for integrations that know better
        # than the last logged step.
        if self._closed:
            raise RuntimeError("run is closed: log_artifact() needs an open run")
        self._artifacts.log(path_or_uri, kind, step, compute_hash, metadata)

    # -- durability --------------------------------------------------------------------

    @property
    def stats(self) -> RunStats:
        """Delivery counters: logged, acknowledged, spooled, dropped, lag, ..."""
        return self._stats_with(self._sender_counters(None))

    def _sender_counters(self, fresh: dict[str, Any] | None) -> SenderCounters:
        link = self._sender
        if link is None:
            return SenderCounters()
        if fresh is None and link.alive and link.ready.is_set():
            fresh = link.request("stats", 0.0, wait_s=1.0)
        return SenderCounters.of(fresh or link.last, self._sender_points,
                                 self._sender_settled, link.alive)

    def _stats_with(self, b: SenderCounters) -> RunStats:
        s = self._stats
        spool = self._spool
        logged = s.points_logged + self._internal_logged
        dropped = self._queue_dropped + spool.counters.dropped_points + b.dropped_points
        # acked + rejected, consistent with the seq
        trimmed = spool.counters.trimmed_points + b.trimmed_points
        invalid = s.points_invalid + b.points_invalid
        rejected = s.points_rejected + b.points_rejected
        pending = max(0, logged - trimmed - dropped - invalid)
        oldest = min((t for t in (spool.oldest_pending_ns(), b.oldest_pending_ns) if t),
                     default=None)
        # While the process carries log(), its stream is the one that says how delivery
        # goes; offline, the spool's "offline" holds either way.
        state = "closed" if self._closed else (
            b.state if b.state and s.state != "offline" else s.state)
        return RunStats(
            points_logged=logged, points_acked=max(0, trimmed - rejected),
            points_spooled=s.points_spooled + b.points_spooled,
            points_pending=pending, points_dropped=dropped, points_invalid=invalid,
            points_rejected=rejected,
            batches_pending=spool.pending_batches + b.batches_pending,
            batches_sent=s.batches_sent + b.batches_sent,
            batches_rejected=s.batches_rejected + b.batches_rejected,
            spool_bytes=spool.bytes + b.spool_bytes,
            corrupt_records=spool.counters.corrupt_records + b.corrupt_records,
            lag_s=max(0.0, (time.time_ns() - oldest) / 1e9) if oldest else 0.0,
            reconnects=s.reconnects + b.reconnects, slow_downs=s.slow_downs + b.slow_downs,
            ops_failed=len(self._delivery.control.errors),
            state=state, last_error=self._own_error(b) or b.last_error,
            ack_latencies_ms=tuple(s.ack_ms) + b.ack_ms,
            sender="process" if self._tail is not None and self._tail.shared else "thread",
        )

    def _own_error(self, b: SenderCounters) -> str:
        error = self._stats.last_error
        sender = self._delivery.sender
        if b.state and sender is not None and error and error == sender.stream_error:
            # This process's stream only carried what was logged before the sender
            # process took over; once idle it does not reconnect, so its last error
            # would stay. The process's stream tells how delivery goes.
            return ""
        return error

    def _report(self, sender: dict[str, Any] | None = None) -> DeliveryReport:
        st = self._stats_with(self._sender_counters(sender))
        ops = self._delivery.pending_ops + self._artifacts.pending
        return DeliveryReport(
            durable=st.points_pending == 0 and st.batches_pending == 0 and ops == 0
            and self._delivery.attached.is_set(),
            points_pending=st.points_pending, batches_pending=st.batches_pending,
            ops_pending=ops, oldest_unacked_age_s=st.lag_s if st.batches_pending else None,
            spool_path=str(self._spool.path), state=st.state,
            ops_failed=tuple(self._delivery.control.errors),
        )

    def flush(self, timeout: float = 30.0) -> DeliveryReport:
        """Wait at most ``timeout`` seconds until everything logged so far is durable."""
        deadline = time.monotonic() + timeout
        if not self._closed:
            self._batcher.flush(timeout)
            self._artifacts.drain(deadline)
        if self.mode == "online":
            self._delivery.wait_delivered(deadline)
        sender = None
        if self._sender is not None and not self._closed:
            sender = self._sender.request("flush", max(0.0, deadline - time.monotonic()))
        return self._report(sender)

    def finish(self, status: str = "finished", timeout: float = 30.0) -> DeliveryReport:
        """Mark the run ``finished``/``failed``/``killed`` (primary rank only) and close.

        Returns within ``timeout`` seconds; what is not delivered by then stays in
        the spool and is delivered by the next start or ``tracker sync``.
        """
        status_number(status)  # validate before anything is queued
        deadline = time.monotonic() + timeout
        if self.primary and not self._closed:
            # Artifacts first: a finished run's record is then complete.
            self._artifacts.drain(deadline)
            self._delivery.control.submit({"op": "finish", "status": status})
        return self.close(max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float = 30.0) -> DeliveryReport:
        """Deliver for at most ``timeout`` seconds, then stop the background threads.

        The run's status is left as is (see :meth:`finish`). Undelivered points stay
        in the spool on disk.
        """
        with self._close_lock:
            if self._closed:
                return self._report()
            deadline = time.monotonic() + timeout
            self._make_sender = None  # sender="auto": no process from now on
            atexit.unregister(self._atexit)
            self._recovery_stop.set()
            if self._sys is not None:
                self._sys.stop(max(0.0, min(1.0, deadline - time.monotonic())))
            self._batcher.flush(max(0.0, deadline - time.monotonic()))
            self._artifacts.drain(deadline)
            self._artifacts.stop()
            self._batcher.stop(max(0.05, min(1.0, deadline - time.monotonic())))
            sender = None
            if self._sender is not None:
                # From here log() writes this process's tail: kept on disk with the
                # spool when it arrives too late to be delivered.
                self._tail = self._spool.tail
                sender = self._sender.close(max(0.0, deadline - time.monotonic()))
            if self.mode == "online":
                self._delivery.wait_delivered(deadline)
            self._delivery.close(deadline)
            report = self._report(sender)
            self._closed = True
            self._spool.end(delivered=report.durable and self.mode == "online")
            if not report.durable and report.points_pending + report.ops_pending:
                log.warning("tracker_client: %d point(s) and %d op(s) not delivered; kept "
                            "in %s", report.points_pending, report.ops_pending,
                            self._spool.path)
            if self._channel is not None:
                self._channel.close()
            return report

    def _atexit(self) -> None:
        timeout = self._exit_timeout_s
        crashed = getattr(sys, "last_value", None) is not None
        try:
            self.finish("failed" if crashed else "finished", timeout=timeout)
        except Exception:  # at exit, a report beats a traceback (e.g. spool dir removed)
            log.exception("tracker_client: exit flush failed; data may remain in %s",
                          self._spool.path)

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        failed = exc_type is not None and not issubclass(exc_type, KeyboardInterrupt)
        killed = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        self.finish("failed" if failed else "killed" if killed else "finished")

    def __repr__(self) -> str:
        return (f"Run(run_key={self.run_key!r}, run_id={self.run_id!r}, rank={self.rank}, "
                f"state={self._stats.state!r})")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:80] or "run"


def init(
    experiment: str | None = None,
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    run_key: str | None = None,
    resume: bool | None = None,
    server: str | None = None,
    api_key: str | None = None,
    seed: int | None = None,
    owner: str = "",
    mode: Mode | None = None,
    options: Options | None = None,
    rank: int | None = None,
    tls: _env.TlsOption = None,
    run_id: str | None = None,
) -> Run:
    """Attach this process to a run (creating it when needed) and return a :class:`Run`.

    - ``experiment`` (``$TRACKER_EXPERIMENT``, default ``"default"``) is created when
      missing. ``server`` defaults to ``$TRACKER_SERVER``, ``api_key`` to
      ``$TRACKER_API_KEY``, ``mode`` to ``$TRACKER_MODE`` or ``"online"``.
    - ``run_key`` (default: derived from ``TORCHELASTIC_RUN_ID`` / ``SLURM_JOB_ID``)
      makes every rank of a job attach to the same run; without one, a fresh key
      (so a fresh run) is generated.
    - ``resume=True`` starts a new attempt of an existing run: its steps supersede the
      earlier attempt's from its first step on. Under torchrun or SLURM every rank sends
      the same resume token (job id + restart count), so the attempt goes up once per
      restart whichever rank arrives first; elsewhere only the primary rank resumes.
    - ``run_id`` attaches to an existing run by its server id (``resume=True`` starts a
      new attempt of it); an unknown id raises :class:`TrackerError` (NOT_FOUND).
    - ``config`` becomes the run's params, nested mappings as dotted keys
      (``{"optim": {"lr": 1e-3}}`` -> ``optim.lr = "0.001"``, lists as JSON); ``seed``
      and reproducibility metadata (git, host, packages, command line, SLURM, GPUs) are
      recorded.
    - Launchers can set the identity in the environment: ``TRACKER_RUN_KEY``,
      ``TRACKER_RUN_NAME``, ``TRACKER_RESUME``, ``TRACKER_TAGS`` (``k=v,k2=v2``, merged
      under ``tags``) and ``TRACKER_SYSTEM_METRICS=0``. Explicit arguments win.
    - ``tls``: False for plaintext, True for TLS with the system's root certificates, or
      the path of a PEM CA bundle; default from ``$TRACKER_TLS_CA`` / ``$TRACKER_TLS``
      (client certificate for mutual TLS: ``$TRACKER_TLS_CLIENT_CERT`` / ``_KEY``).
    - If the server cannot be reached, init() does not fail: the run logs to its
      spool and is created as soon as the server answers. ``mode="offline"`` never
      connects; upload later with ``tracker sync``.

    Non-retryable server errors (invalid names, a param changing value) raise
    :class:`TrackerError`; a malformed setting (``TRACKER_MODE=ofline``, ``TRACKER_TLS=ture``,
    ``TRACKER_EXIT_TIMEOUT_S``) raises ValueError naming the variable and the accepted
    values, before anything is written.
    """
    opt = options or Options()
    # Everything read from the environment is checked before anything touches the disk.
    mode = mode or _env.mode()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    exit_timeout_s = _env.exit_timeout_s(opt.exit_timeout_s)
    tls_config = _env.tls_config(tls) if mode == "online" else None
    address = _env.server_address(server)
    key = _env.api_key(api_key)
    md: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {key}"),) if key else ()
    rank = _env.rank() if rank is None else rank
    if run_id is not None:
        if run_key:
            raise ValueError("give run_id (an existing run) or run_key, not both")
        try:
            run_id = str(uuid.UUID(run_id))
        except ValueError:
            raise ValueError(f"run_id must be a run's UUID, got {run_id!r}") from None
        run_key = ""
    else:
        run_key = _env.run_key(run_key) or f"run-{uuid.uuid4().hex[:12]}"
    resume = _env.resume(resume)
    run_tags = _env.tags(tags)
    run_name = _env.run_name(name)
    params = flatten(config or {})
    sys_interval = _env.system_metrics(opt.system_metrics_interval_s)
    if _env.local_rank() != 0:
        sys_interval = None  # node-wide metrics: local rank 0 samples them for the node
    if sys_interval != opt.system_metrics_interval_s:
        opt = replace(opt, system_metrics_interval_s=sys_interval)
    sender_kind = _env.sender(opt.sender)
    root = opt.spool_dir or _env.spool_dir()
    writer_id = f"{_safe(run_key or str(run_id))}.r{rank}.{uuid.uuid4().hex[:10]}"
    job_token = _env.job_resume_token()
    # A token per resume makes the server count it once: shared by all ranks of a
    # restarted job, or (no job environment) private to the primary rank's init, kept in
    # the spool so a retried CreateRun cannot start a second attempt.
    resumes = bool(resume and (job_token or rank == 0))
    resume_token = (job_token or f"init-{uuid.uuid4().hex}") if resumes else ""
    meta = SpoolMeta(
        mode=mode, server=address, experiment=_env.experiment_name(experiment),
        owner=owner, name=run_name, run_key=run_key, attach_run_id=run_id or "",
        writer_id=writer_id, rank=rank, params=params, tags=run_tags, resume=resumes,
        resume_token=resume_token, seed=seed,
        slurm_job_id=os.environ.get("SLURM_JOB_ID", ""),
        metadata=_metadata.collect(seed, rank, _env.world_size()),
        created_ns=time.time_ns(),
    )
    spool = opt.spool().open(root / writer_id, tail=True)
    spool.update_meta(lambda _: meta)
    if resume and not resumes:
        log.info("tracker_client: rank %d attaches to the attempt the primary rank resumes",
                 rank)
    channel = make_channel(address, CHANNEL_OPTIONS, tls_config) if mode == "online" else None
    stats = DeliveryStats()
    delivery = Delivery(spool, channel, md, opt, stats)
    if channel is not None:
        ref = _try_create(channel, spool, md, opt)
        if ref is not None:
            delivery.ref = ref
    link: SenderLink | None = None
    recover = make_sender = None
    if sender_kind in ("process", "auto"):
        def new_sender() -> SenderLink:
            return _sender_link(spool, opt, address, tls, key, mode)

        if sender_kind == "process":
            link = new_sender()
        else:
            make_sender = new_sender
        if channel is not None:
            online = channel

            def recover(path: Path, stop: threading.Event) -> bool:
                result = deliver_spool(path, online, md, opt, time.monotonic() + 3600.0, stop)
                return result is not None and result.delivered
    run = Run(spool=spool, delivery=delivery, channel=channel, options=opt, rank=rank,
              mode=mode, exit_timeout_s=exit_timeout_s, sender=link, recover=recover,
              make_sender=make_sender)
    if channel is not None and opt.recover_orphans:
        threading.Thread(target=recover_orphans, name="tracker-recover", daemon=True,
                         args=(root, address, channel, md, opt, run._recovery_stop)).start()
    return run


SENDER_PRIORITY = "normal"
"""CPU priority of the sender process (``$TRACKER_SENDER_PRIORITY``: ``normal``,
``nice:N`` or ``idle`` for Linux SCHED_IDLE). Normal by default: below the training
process it starves whenever the machine is busy and the tail fills and drops. Measured
on 2 busy cores (a loop logging 20-scalar dicts back to back, the server on the same
machine): nice 10 dropped 1.0-1.9 M of ~24 M points, normal none; SCHED_IDLE dropped
0.37 M of 10 M in the client bench."""


def _sender_link(spool: Spool, opt: Options, address: str, tls: _env.TlsOption, key: str | None,
                 mode: Mode) -> SenderLink:
    """The sender process's spool (next to this writer's, as writer ``<id>.s``) and the
    link that starts it."""
    meta = spool.meta
    path = spool.path.parent / (meta.writer_id + SENDER_SUFFIX)
    # The process writes meta.json once it holds the spool's lock: a spool with a meta
    # and no owner is an orphan, which another process's recovery would take.
    sender_meta = dataclasses.asdict(replace(meta, writer_id=meta.writer_id + SENDER_SUFFIX))
    return SenderLink(path, {"options": opt.to_json(), "mode": mode, "server": address,
                             "tls": tls, "api_key": key,
                             "priority": os.environ.get("TRACKER_SENDER_PRIORITY",
                                                        SENDER_PRIORITY),
                             "meta": sender_meta})


def _try_create(channel: grpc.Channel, spool: Spool, md: tuple[tuple[str, str], ...],
                opt: Options) -> RunRef | None:
    """Create/attach the run now; None when the server is unreachable (retried later)."""
    try:
        return create_run(channel, spool.meta, md, opt.init_timeout_s)
    except grpc.RpcError as exc:
        if exc.code() in RETRYABLE_CODES:
            log.warning("tracker_client: server %s unreachable (%s); logging to the spool "
                        "%s until it answers", spool.meta.server, exc.code().name,
                        spool.path)
            return None
        spool.destroy()
        raise TrackerError(exc.code(), exc.details() or "") from None
