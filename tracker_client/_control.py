"""Params, tags and status changes: persisted next to the spool, delivered in order.

They are rare and small, so each is one line of ``ops.jsonl`` in the spool directory
(written before any delivery attempt) and the count of delivered lines lives in the
spool's meta. A thread delivers them with retries once the run exists; whatever is
left is delivered by the next start or ``tracker sync``. An op the server refuses for
good (an immutable param changed, a status change it does not allow, an RPC it does
not implement) is not retried: it is counted as done and reported in ``errors``, in
``run.stats.ops_failed`` and in the ``DeliveryReport``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc

from tracker_client._clock import Backoff
from tracker_client._meta import SpoolMeta
from tracker_client._rpc import RETRYABLE_CODES, Metadata, RunRef, deliver_op
from tracker_client._spool import Spool
from tracker_client._stats import DeliveryStats
from tracker_client._stream import IDLE_WAIT_S

log = logging.getLogger("tracker_client")
OPS_FILE = "ops.jsonl"


def read_ops(path: Path) -> list[dict[str, Any]]:
    """Every op line of a spool directory (a torn last line is ignored)."""
    try:
        lines = (path / OPS_FILE).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    ops = []
    for line in lines:
        try:
            ops.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return ops


class ControlQueue:
    """Ordered, persisted delivery of control ops for one spool."""

    def __init__(self, spool: Spool, channel: grpc.Channel | None, metadata: Metadata,
                 timeout_s: float, stats: DeliveryStats,
                 backoff: Backoff | None = None) -> None:
        self._spool = spool
        self._stats = stats
        self._channel = channel
        self._metadata = metadata
        self._timeout = timeout_s
        self._backoff = backoff or Backoff()
        self._ops = read_ops(spool.path)
        self._saved = len(self._ops)  # ops written to ops.jsonl; the rest are in _unsaved
        self._unsaved: list[str] = []
        self._persist_warned = False
        self._done = spool.meta.ops_done
        self._ref: RunRef | None = None
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self.errors: list[str] = []
        """Ops that failed for good (e.g. an immutable param changed), as messages;
        appended by the delivery thread only."""
        self._thread = threading.Thread(target=self._loop, name="tracker-control", daemon=True)

    @property
    def submitted(self) -> int:
        """Ops submitted so far (the ticket of the latest)."""
        return len(self._ops)

    @property
    def pending(self) -> int:
        """Ops not delivered yet."""
        return len(self._ops) - self._done

    def submit(self, op: dict[str, Any]) -> int:
        """Persist an op and queue it; returns its ticket for :meth:`wait`.

        Never raises OSError: when the disk refuses the line (full), the op is still
        delivered by this process and written to ``ops.jsonl`` at the next submit or
        delivery that finds space (lines stay in submission order)."""
        line = json.dumps(op, sort_keys=True, default=str)
        with self._cv:
            self._ops.append(op)
            self._unsaved.append(line + "\n")
            self._persist()
            self._cv.notify_all()
            return len(self._ops)

    def _persist(self) -> None:
        """Append the unsaved lines to ``ops.jsonl``, all or none (under ``_cv``)."""
        if not self._unsaved:
            return
        data = "".join(self._unsaved).encode("utf-8")
        path = self._spool.path / OPS_FILE
        io = self._spool.io
        try:
            fd = io.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as exc:
            self._persist_failed(exc)
            return
        try:
            start = os.fstat(fd).st_size
            view = memoryview(data)
            done = 0
            try:
                while done < len(data):
                    n = io.write(fd, view[done:])
                    if n <= 0:
                        raise OSError(errno.ENOSPC, "write returned 0")
                    done += n
            except OSError as exc:
                if done:  # no torn line: read_ops would stop at it and lose the rest
                    with contextlib.suppress(OSError):
                        io.ftruncate(fd, start)
                self._persist_failed(exc)
                return
        finally:
            os.close(fd)
        self._saved += len(self._unsaved)
        self._unsaved.clear()

    def _persist_failed(self, exc: OSError) -> None:
        if not self._persist_warned:
            log.warning("tracker_client: cannot write %s (%s); the op is delivered from "
                        "memory and written when space returns", OPS_FILE, exc)
            self._persist_warned = True

    def attach(self, ref: RunRef) -> None:
        """The run exists: start delivering."""
        self._ref = ref
        if self._channel is not None and not self._thread.is_alive():
            self._thread.start()

    def wait(self, ticket: int, deadline: float) -> bool:
        """Wait until op ``ticket`` (and all before it) is delivered or failed."""
        with self._cv:
            while self._done < ticket:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return False
                self._cv.wait(min(remaining, 0.1))
            return True

    def stop(self) -> None:
        """Stop delivering (undelivered ops stay persisted)."""
        self._stop.set()
        with self._cv:
            self._cv.notify_all()

    def _loop(self) -> None:
        assert self._channel is not None and self._ref is not None
        while not self._stop.is_set():
            with self._cv:
                while self._done >= len(self._ops) and not self._stop.is_set():
                    self._cv.wait(IDLE_WAIT_S)  # submit() and stop() notify
                if self._stop.is_set():
                    return
                op = self._ops[self._done]
            try:
                deliver_op(self._channel, op, self._ref, self._metadata, self._timeout)
            except grpc.RpcError as exc:
                if exc.code() in RETRYABLE_CODES:
                    self._stop.wait(self._backoff.next_delay())
                    continue
                self._fail(op, f"{exc.code().name}: {exc.details()}")
            except ValueError as exc:
                self._fail(op, str(exc))
            self._backoff.reset()
            with self._cv:
                self._done += 1
                self._persist()
                # meta counts lines of ops.jsonl: never more than are written there.
                self._spool.update_meta(_ops_done(min(self._done, self._saved)))
                self._cv.notify_all()

    def _fail(self, op: dict[str, Any], message: str) -> None:
        text = f"{op['op']} not applied: {message}"
        self.errors.append(text)
        self._stats.last_error = text
        log.error("tracker_client: %s", text)


def _ops_done(count: int) -> Callable[[SpoolMeta], SpoolMeta]:
    return lambda meta: replace(meta, ops_done=count)
