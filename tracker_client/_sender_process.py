"""The sender process: batches, spools and streams what one training process logs.

Why a process: CPython's threads share one GIL. A training loop that stays in Python
(no GPU kernel to wait on) holds it, and each time the batcher or the stream thread
takes it, one ``log()`` call waits until that thread lets go: milliseconds, a few
hundred times a second. In a process of its own the same work runs on another core
and ``log()`` never waits for it. (W&B moved its sender into a separate process for the
same reason.)

The training process writes its records into the tail of this process's spool (a
``MAP_SHARED`` file, see ``_tail``) and publishes the end position; this process
polls it, cuts batches into its spool and streams them as its own writer of the run
(``<writer id>.s``: exactly-once per writer holds as for any writer). Params, tags,
status and artifacts stay with the training process's own writer.

Protocol (JSON lines): the first line on stdin is the configuration; then requests
``{"op": "attach", "ref": [...]}``, ``{"op": "flush" | "stats" | "close", "id": n,
"timeout": s}``. On stdout: ``{"ready": ...}`` once the tail is mapped, then one reply
per request with an id. End of stdin means the training process is gone: what its
tail holds is delivered (for up to ``exit_timeout_s``) and the process exits, so even
a SIGKILLed trainer's last records reach the server at once. SIGINT is ignored (a
Ctrl-C reaches the whole process group; the trainer decides); SIGTERM closes as end of
stdin does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import IO, Any

from tracker_client import _env
from tracker_client._batcher import Batcher
from tracker_client._delivery import Delivery
from tracker_client._meta import parse_meta
from tracker_client._options import Options
from tracker_client._rpc import RunRef, make_channel
from tracker_client._run import CHANNEL_OPTIONS
from tracker_client._spool import Spool
from tracker_client._stats import DeliveryStats

log = logging.getLogger("tracker_client")


class _Terminate(Exception):
    """SIGTERM: close as if the training process were gone."""


def snapshot(batcher: Batcher, delivery: Delivery, spool: Spool,
             stats: DeliveryStats) -> dict[str, Any]:
    """What the training process merges into ``run.stats`` and its reports."""
    tail = spool.tail
    unread = 0
    if tail is not None and not tail.closed:
        tail.sync()
        unread = tail.write_pos - tail.covered
    c = spool.counters
    return {
        "points_consumed": batcher.consumed_points, "points_spooled": stats.points_spooled,
        "points_invalid": stats.points_invalid, "points_rejected": stats.points_rejected,
        "batches_sent": stats.batches_sent, "batches_rejected": stats.batches_rejected,
        "reconnects": stats.reconnects, "slow_downs": stats.slow_downs,
        "last_error": stats.last_error, "state": stats.state,
        "ack_ms": list(stats.ack_ms)[-256:], "dropped_points": c.dropped_points,
        "trimmed_points": c.trimmed_points, "corrupt_records": c.corrupt_records,
        "batches_pending": spool.pending_batches, "spool_bytes": spool.bytes,
        "oldest_pending_ns": spool.oldest_pending_ns(), "unread_bytes": unread,
        "attached": delivery.attached.is_set(), "fatal": delivery.fatal,
    }


class SenderMain:
    """The body of the sender process (one spool, one batcher, one delivery)."""

    def __init__(self, config: dict[str, Any], out: IO[str]) -> None:
        self._out = out
        self.opt = Options.from_json(config["options"])
        self.online = config["mode"] == "online"
        self.spool = self.opt.spool().open(Path(config["spool"]), tail=True)
        if config.get("meta") is not None:  # first start (a restart finds its meta)
            meta = parse_meta(config["meta"])
            if not self.spool.meta.writer_id:
                self.spool.update_meta(lambda _: meta)
        tail = self.spool.tail
        if tail is None or tail.path is None:
            raise RuntimeError("the tail file could not be made (see the warning)")
        tail.shared = True
        channel = None
        if self.online:
            channel = make_channel(config["server"], CHANNEL_OPTIONS,
                                   _env.tls_config(config.get("tls")))
        self._channel = channel
        key = config.get("api_key") or ""
        md: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {key}"),) if key else ()
        self.stats = DeliveryStats()
        self.delivery = Delivery(self.spool, channel, md, self.opt, self.stats)
        self.batcher = Batcher(self.spool, self.opt, self.stats, self._on_batch)
        self.closed = False

    def _on_batch(self) -> None:
        if self.delivery.sender is not None:
            self.delivery.sender.wake()

    def start(self) -> None:
        """Start the threads and say ready."""
        self.batcher.start()
        if self._channel is None or self.delivery.ref is not None:
            self.delivery.start()
        else:
            self.stats.state = "offline"  # the training process attaches the run
        assert self.spool.tail is not None
        self.send({"ready": True, "tail": str(self.spool.tail.path), "pid": os.getpid()})

    def send(self, msg: dict[str, Any]) -> None:
        """One line to the training process (ignored once it is gone)."""
        try:
            self._out.write(json.dumps(msg) + "\n")
            self._out.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass

    def handle(self, msg: dict[str, Any]) -> bool:
        """Serve one request; False once closed."""
        op = msg.get("op")
        timeout = float(msg.get("timeout", 0.0))
        if op == "attach":
            if self._channel is not None and not self.delivery.attached.is_set():
                run_id, experiment_id, attempt, name = msg["ref"]
                self.delivery.attach(RunRef(run_id, experiment_id, int(attempt), name))
            return True
        if op == "flush":
            deadline = time.monotonic() + timeout
            self.batcher.flush(timeout)
            if self.online and self.delivery.attached.is_set():
                self.delivery.wait_delivered(deadline)
            self.send({"id": msg.get("id"), **self.snapshot()})
            return True
        if op == "stats":
            self.send({"id": msg.get("id"), **self.snapshot()})
            return True
        if op == "close":
            self.send({"id": msg.get("id"), **self.close(timeout)})
            return False
        log.warning("tracker_client: sender process: unknown request %r", op)
        return True

    def snapshot(self) -> dict[str, Any]:
        """Counters for the training process."""
        return snapshot(self.batcher, self.delivery, self.spool, self.stats)

    def close(self, timeout: float) -> dict[str, Any]:
        """Drain the tail, deliver until ``timeout``, stop; remove the spool when all of
        it is acknowledged (otherwise it waits for the next start or ``tracker sync``)."""
        if self.closed:
            return self.snapshot()
        deadline = time.monotonic() + timeout
        self.batcher.flush(max(0.0, deadline - time.monotonic()))
        self.batcher.stop(max(0.05, min(1.0, deadline - time.monotonic())))
        if self.online and self.delivery.attached.is_set():
            self.delivery.wait_delivered(deadline)
        self.delivery.close(deadline)
        snap = self.snapshot()
        self.closed = True
        delivered = (snap["attached"] and snap["batches_pending"] == 0
                     and snap["unread_bytes"] == 0)
        self.spool.end(delivered=delivered and self.online)
        if self._channel is not None:
            self._channel.close()
        return snap


def _terminate(_signum: int, _frame: Any) -> None:
    raise _Terminate


def _lower_priority(how: str) -> None:
    """``idle``: run only on CPU time the training process leaves (Linux SCHED_IDLE:
    any normal task on the same core preempts this one at once); ``nice:N``: a lower
    nice value (a normal time slice, fewer of them); anything else: as is."""
    if how == "idle" and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
    if how.startswith("nice:") and hasattr(os, "nice"):
        with contextlib.suppress(OSError, ValueError):
            os.nice(int(how[5:]))


def main() -> int:
    """Entry point: ``python -m tracker_client._sender_process`` (started by ``init``)."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # stray prints of libraries must not corrupt the protocol
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminate)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    config = json.loads(sys.stdin.readline() or "{}")
    if not config:
        return 1
    _lower_priority(str(config.get("priority", "")))
    try:
        sender = SenderMain(config, out)
    except Exception as exc:  # reported; the training process keeps its own path
        out.write(json.dumps({"ready": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n")
        out.flush()
        return 1
    sender.start()
    try:
        for line in sys.stdin:
            if not sender.handle(json.loads(line)):
                return 0
    except _Terminate:
        pass
    # The training process is gone (or SIGTERM): deliver what it logged, then exit.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sender.close(sender.opt.exit_timeout_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
