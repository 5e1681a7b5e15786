"""The training process's handle on its sender process (see ``_sender_process``).

It starts the process without waiting for it (``init()`` does not get slower: until
the process is ready, ``log()`` keeps using the in-process batcher), maps the tail the
process made, and carries requests and replies. If the process dies, ``on_lost`` runs
once: the run goes back to its in-process path, and what the process's spool holds is
delivered like any orphan spool (exactly once: seqs and the tail's state say what was
spooled and sent).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tracker_client._meta import META_FILE
from tracker_client._rpc import RunRef
from tracker_client._tail import Tail, open_shared_writer

log = logging.getLogger("tracker_client")

SENDER_SUFFIX = ".s"
"""The sender process's writer id: the training process's own plus this."""


@dataclass(frozen=True)
class SenderCounters:
    """The sender process's part of ``run.stats`` (zeros without one)."""

    trimmed_points: int = 0
    dropped_points: int = 0
    points_invalid: int = 0
    points_rejected: int = 0
    points_spooled: int = 0
    batches_pending: int = 0
    batches_sent: int = 0
    batches_rejected: int = 0
    spool_bytes: int = 0
    corrupt_records: int = 0
    oldest_pending_ns: int | None = None
    reconnects: int = 0
    slow_downs: int = 0
    last_error: str = ""
    ack_ms: tuple[float, ...] = ()
    state: str = ""
    """The metric stream's state while the process runs ("" otherwise)."""

    @classmethod
    def of(cls, snap: dict[str, Any], written: int, settled: bool,
           alive: bool) -> SenderCounters:
        """From the process's last counters; ``written``: points log() put in its tail.
        ``settled``: the process died and its spool was delivered since, so all of
        ``written`` is accounted for (acknowledged, or dropped/invalid as counted)."""
        dropped = int(snap.get("dropped_points", 0))
        invalid = int(snap.get("points_invalid", 0))
        trimmed = int(snap.get("trimmed_points", 0))
        pending = int(snap.get("batches_pending", 0))
        if settled:
            trimmed = max(trimmed, written - dropped - invalid)
            pending = 0
        return cls(
            trimmed_points=trimmed, dropped_points=dropped, points_invalid=invalid,
            points_rejected=int(snap.get("points_rejected", 0)),
            points_spooled=int(snap.get("points_spooled", 0)), batches_pending=pending,
            batches_sent=int(snap.get("batches_sent", 0)),
            batches_rejected=int(snap.get("batches_rejected", 0)),
            spool_bytes=0 if settled else int(snap.get("spool_bytes", 0)),
            corrupt_records=int(snap.get("corrupt_records", 0)),
            oldest_pending_ns=None if settled else snap.get("oldest_pending_ns"),
            reconnects=int(snap.get("reconnects", 0)),
            slow_downs=int(snap.get("slow_downs", 0)),
            last_error=str(snap.get("last_error", "")),
            ack_ms=tuple(float(x) for x in snap.get("ack_ms", ())),
            state=str(snap.get("state", "")) if alive else "",
        )


def link_spool_exists(link: SenderLink | None) -> bool:
    """Whether the sender process's spool is still on disk (not delivered yet)."""
    return link is not None and (link.spool_path / META_FILE).exists()


class SenderLink:
    """Start, talk to and watch one sender process."""

    def __init__(self, spool_path: Path, config: dict[str, Any]) -> None:
        self.spool_path = spool_path
        self._config = {**config, "spool": str(spool_path)}
        self.on_ready: Callable[[Tail], None] = lambda _tail: None
        """Called (from the link's thread) once the process's tail is mapped."""
        self.on_lost: Callable[[], None] = lambda: None
        """Called once if the process ends before :meth:`close` (or fails to start)."""
        self.tail: Tail | None = None
        self.ready = threading.Event()
        """Set once the process mapped its tail (or failed to start: see ``alive``)."""
        self.alive = False
        self.error = ""
        self.last: dict[str, Any] = {}
        """The last counters the process reported."""
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._ref: RunRef | None = None
        self._closing = False
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        """The process id (None before start)."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Spawn the process (returns at once)."""
        env = dict(os.environ)
        # The same tracker_client as this process, whatever put it on sys.path.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tracker_client._sender_process"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            close_fds=True, bufsize=1)
        assert self._proc.stdin is not None
        self._write(json.dumps(self._config, default=str))
        self.alive = True
        self._reader = threading.Thread(target=self._read_loop, name="tracker-sender-link",
                                        daemon=True)
        self._reader.start()

    def attach(self, ref: RunRef) -> None:
        """The run exists: the process streams as a writer of it."""
        self._ref = ref
        if self.ready.is_set() and self.alive:
            self._send_attach()

    def _send_attach(self) -> None:
        ref = self._ref
        if ref is not None:
            self._write(json.dumps({"op": "attach", "ref": [
                ref.run_id, ref.experiment_id, ref.attempt, ref.name]}))

    def request(self, op: str, timeout: float, wait_s: float | None = None
                ) -> dict[str, Any] | None:
        """Send ``op`` and wait for its reply (``wait_s``, default ``timeout`` plus a
        second); None when the process is gone or late."""
        if not self.alive or not self.ready.is_set():
            return None
        rid = next(self._ids)
        event = threading.Event()
        box: list[dict[str, Any]] = []
        with self._lock:
            self._waiting[rid] = (event, box)
        if not self._write(json.dumps({"op": op, "id": rid, "timeout": timeout})):
            with self._lock:
                self._waiting.pop(rid, None)
            return None
        event.wait(timeout + 1.0 if wait_s is None else wait_s)
        with self._lock:
            self._waiting.pop(rid, None)
        return box[0] if box else None

    def close(self, timeout: float) -> dict[str, Any] | None:
        """Ask the process to deliver for up to ``timeout`` and exit; its last counters."""
        self._closing = True
        reply = self.request("close", timeout)
        proc = self._proc
        if proc is not None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):  # end of input: it exits in any case
                    proc.stdin.close()
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                log.warning("tracker_client: sender process %d did not exit; killed "
                            "(its spool is delivered by the next start or tracker sync)",
                            proc.pid)
                proc.kill()
                proc.wait(2.0)
        if self._reader is not None:
            self._reader.join(2.0)
        if self.tail is not None:
            self.tail.close()
        return reply

    def _write(self, line: str) -> bool:
        proc = self._proc
        if proc is None or proc.stdin is None:
            return False
        try:
            with self._write_lock:  # not _lock: the reader needs that one to dispatch
                proc.stdin.write(line + "\n")
                proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError, ValueError):
            return False

    def _read_loop(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        stream: IO[str] = proc.stdout
        try:
            for line in stream:
                msg = json.loads(line)
                if "ready" in msg:
                    self._on_first(msg)
                    continue
                if "id" in msg:
                    self.last = msg
                    with self._lock:
                        waiter = self._waiting.get(msg["id"])
                    if waiter is not None:
                        waiter[1].append(msg)
                        waiter[0].set()
        except (ValueError, OSError) as exc:
            self.error = f"sender process protocol: {exc}"
        finally:
            self.alive = False
            with self._lock:
                for event, _box in self._waiting.values():
                    event.set()
            was_ready = self.ready.is_set() and self.tail is not None
            self.ready.set()
            if not self._closing:
                if was_ready:
                    code = proc.poll()
                    log.warning("tracker_client: sender process %d ended (exit %s); log() "
                                "goes through this process again", proc.pid, code)
                self.on_lost()

    def _on_first(self, msg: dict[str, Any]) -> None:
        if not msg.get("ready"):
            self.error = str(msg.get("error", "sender process failed to start"))
            log.warning("tracker_client: sender process not started (%s); log() stays in "
                        "this process", self.error)
            self.ready.set()
            return
        try:
            self.tail = open_shared_writer(Path(msg["tail"]))
        except (OSError, ValueError) as exc:
            self.error = f"cannot map the sender process's tail: {exc}"
            log.warning("tracker_client: %s; log() stays in this process", self.error)
            self.ready.set()
            return
        self.ready.set()
        self._send_attach()
        self.on_ready(self.tail)
