"""The batcher thread: log records -> packed batches -> spool.

A batch is cut when it holds ``batch_points`` points or ``flush_interval_s`` after its
first point, whichever comes first. Each cut batch is appended to the spool (which
assigns its seq) and the sender is woken. The training thread never waits for any of
this: it writes its record into the spool's memory-mapped tail (``_tail``; records the
tail cannot hold go to :attr:`Batcher.records`) and sometimes sets an Event.

Each cut marks the tail covered up to the batch's last record, in the three steps that
make a killed process's tail recovered exactly once (see ``_tail``).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tracker_client._columns import ColumnBuilder
from tracker_client._options import Options
from tracker_client._spool import Spool
from tracker_client._stats import DeliveryStats
from tracker_client._tail import KIND_BLOCK, KIND_SCALARS, ScalarBlock

log = logging.getLogger("tracker_client")

ScalarRecord = tuple[tuple[str, ...], list[float], int, int]
"""(keys, values, step, wall_ns) from ``log()``."""
IDLE_WAIT_S = 1.0
"""Safety net of the idle wait (see _loop)."""
SHARED_POLL_S = 0.002
"""How often the batcher of a tail written by another process looks for records."""
SeriesRecord = tuple[str, Any, Any, int]
"""(key, steps int64 array, values float64 array, wall_ns) from ``log_series()``."""


class Batcher:
    """Owns the record queue and the thread that drains it into the spool."""

    def __init__(
        self, spool: Spool, options: Options, stats: DeliveryStats,
        on_batch: Callable[[], None],
    ) -> None:
        self.records: collections.deque[Any] = collections.deque()
        self.wakeup = threading.Event()
        """Set by log() when the thread should look (first record, or a full batch)."""
        self.consumed_points = 0
        """Points taken off ``records`` (only the batcher thread writes it)."""
        self.idle = True
        """No partial batch is waiting: the next record should wake the thread."""
        self._spool = spool
        self.tail = spool.tail
        self._tail_end = spool.tail.covered if spool.tail is not None else 0
        self._opt = options
        self._stats = stats
        self._on_batch = on_batch
        self._builder = ColumnBuilder()
        self._cv = threading.Condition()
        self._flush_requested = 0
        self._flush_done = 0
        self._stopped = False
        self._warned_invalid = 0
        self.on_behind: Callable[[], None] | None = None
        """Called once when a sixteenth of the tail waits (``sender="auto"``)."""
        self._shared = self.tail is not None and self.tail.shared
        # A tail written by another process (the sender process) has no Event to set:
        # the thread looks every poll_s, which costs the writer nothing.
        self._poll_s = min(options.flush_interval_s, SHARED_POLL_S) if self._shared else None
        self._thread = threading.Thread(target=self._loop, name="tracker-batcher", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def flush(self, timeout_s: float) -> bool:
        """Cut everything logged so far into the spool; False when that took too long."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            self._flush_requested += 1
            ticket = self._flush_requested
        self.wakeup.set()
        with self._cv:
            while self._flush_done < ticket and self._thread.is_alive():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._cv.wait(remaining):
                    return self._flush_done >= ticket
        return True

    def stop(self, timeout_s: float) -> None:
        """Drain what is queued (bounded by ``timeout_s``) and end the thread."""
        self._stopped = True
        self.wakeup.set()
        self._thread.join(max(0.0, timeout_s))

    # -- thread ------------------------------------------------------------------------

    def _loop(self) -> None:
        opt = self._opt
        builder = self._builder
        try:
            while True:
                if builder.first_at is None:
                    self.idle = True
                    # log() sets wakeup when it sees idle; what it wrote before that
                    # is found here, so the wait needs no short timeout (each wake-up
                    # takes the GIL from the training loop).
                    if not self._pending():
                        self.wakeup.wait(self._poll_s or IDLE_WAIT_S)
                else:
                    # Sleep until this batch is due unless log() says a full batch waits.
                    remaining = builder.first_at + opt.flush_interval_s - time.monotonic()
                    if remaining > 0:
                        self.wakeup.wait(min(remaining, self._poll_s or remaining))
                self.wakeup.clear()
                self.idle = False
                with self._cv:
                    flush_ticket = self._flush_requested
                self._drain(builder)
                due = (builder.first_at is not None
                       and time.monotonic() - builder.first_at >= opt.flush_interval_s)
                if builder.points and (due or flush_ticket > self._flush_done
                                       or self._stopped):
                    self._cut(builder)
                elif not builder.points and self.tail is not None and (
                        self._tail_end > self.tail.covered):
                    self.tail.commit(self._tail_end)  # records that added no point
                if flush_ticket > self._flush_done:
                    with self._cv:
                        self._flush_done = flush_ticket
                        self._cv.notify_all()
                if self.tail is not None:
                    self.tail.sync()
                if self._stopped and not self.records and (
                        self.tail is None or self.tail.read_pos >= self.tail.write_pos):
                    return
        except Exception:  # a bug here must not kill training; it is visible in stats
            log.exception("tracker_client: batcher thread failed")
            self._stats.last_error = "batcher thread failed (see log)"
        finally:
            with self._cv:
                self._cv.notify_all()

    def _pending(self) -> bool:
        """Records wait (in the queue, the tail, or a flush request)."""
        tail = self.tail
        if tail is not None:
            tail.sync()
            if tail.read_pos < tail.write_pos:
                return True
        return bool(self.records) or self._flush_requested > self._flush_done or (
            self._stopped)

    def _drain(self, builder: ColumnBuilder) -> None:
        records = self.records
        max_points = self._opt.max_batch_points
        tail = self.tail
        if tail is not None:
            tail.sync()
            if self.on_behind is not None and (
                    tail.write_pos - tail.read_pos > tail.capacity // 16):
                behind, self.on_behind = self.on_behind, None
                behind()
        limit = self._limit()  # read again after each cut, not per record
        if tail is not None and tail.read_pos < tail.write_pos:
            for kind, rec, end in tail.read_blocks():
                if kind == KIND_BLOCK:
                    self._add_block(builder, rec)
                    limit = self._limit()
                    continue
                if kind == KIND_SCALARS:
                    builder.add_scalars(*rec)
                    self.consumed_points += len(rec[0])
                else:
                    n = int(rec[1].shape[0])
                    # A tail series goes into one batch whole: its tail entry is covered
                    # by one cut, so a kill can never recover half of it twice.
                    if builder.points and builder.points + n > max_points:
                        self._cut(builder)
                    builder.add_series(*rec)
                    self.consumed_points += n
                self._tail_end = end
                if builder.points >= limit:
                    self._cut(builder)
                    limit = self._limit()
        while records:
            rec = records.popleft()
            if isinstance(rec[0], tuple):
                builder.add_scalars(rec[0], rec[1], rec[2], rec[3])
                self.consumed_points += len(rec[0])
            else:
                self._add_series(builder, rec, max_points)
            if builder.points >= limit:
                self._cut(builder)
                limit = self._limit()
        if builder.invalid_points > self._warned_invalid:
            self._stats.points_invalid = builder.invalid_points
            if not self._warned_invalid:
                log.warning("tracker_client: dropping points with invalid metric names "
                            "(1..250 UTF-8 bytes, no NUL): %s", ", ".join(builder.invalid_keys))
            self._warned_invalid = builder.invalid_points

    def _limit(self) -> int:
        """Points at which a batch is cut: ``batch_points``, or more when more waits.

        Behind (a burst, or a loop logging faster than batch_points per interval), what
        waits goes in batches of up to max_batch_points. Each cut writes the spool, and
        that releases the GIL, which a busy training thread then holds for up to the
        5 ms switch interval: with small batches the batcher would fall ever further
        behind, and the tail fill and drop."""
        if self._shared:
            # The writer's counters are in another process; 8 bytes per point at least.
            assert self.tail is not None
            waiting = (self.tail.write_pos - self.tail.read_pos) // 8
        else:
            waiting = self._stats.points_logged - self.consumed_points
        return min(self._opt.max_batch_points, max(self._opt.batch_points, waiting))

    def _add_block(self, builder: ColumnBuilder, block: ScalarBlock) -> None:
        """A block of records, cut where a batch reaches the limit: the same batches
        (and tail positions) as record by record."""
        per = len(block.keys)
        total = block.steps.shape[0]
        done = 0
        while done < total:
            # Records until the batch holds at least ``limit`` points (at least one).
            take = min(total - done, max(1, -(-(self._limit() - builder.points) // per)))
            sl = slice(done, done + take)
            builder.add_block(block.keys, block.steps[sl], block.values[sl], block.wall_ns[sl])
            done += take
            self.consumed_points += take * per
            self._tail_end = block.start + done * block.length
            if builder.points >= self._limit():
                self._cut(builder)

    def _add_series(self, builder: ColumnBuilder, rec: SeriesRecord, max_points: int) -> None:
        key, steps, values, wall = rec
        n = int(steps.shape[0])
        self.consumed_points += n
        start = 0
        # Split a huge series so no message comes near the server's size limit.
        while start < n:
            room = max(1, max_points - builder.points)
            end = min(n, start + room)
            builder.add_series(key, steps[start:end], values[start:end], wall)
            start = end
            if builder.points >= max_points:
                self._cut(builder)

    def _cut(self, builder: ColumnBuilder) -> None:
        payload, points = builder.build()
        tail = self.tail
        end = self._tail_end
        if not points:
            if tail is not None and end > tail.covered:  # e.g. only invalid names
                tail.commit(end)
            return
        if tail is not None:
            tail.begin(self._spool.last_seq + 1, end)
        seq = self._spool.append(payload, points)
        if tail is not None:  # spooled, or dropped and counted: covered either way
            tail.commit(end)
        if seq is None:  # full spool or full disk: counted in spool.counters.dropped_points
            if self._spool.write_error:
                self._stats.last_error = f"spool write failed: {self._spool.write_error}"
            return
        self._stats.points_spooled += points
        self._on_batch()


def as_series(steps: Any, values: Any) -> tuple[Any, Any]:
    """Validated contiguous (int64 steps, float64 values) arrays of one length."""
    s = np.ascontiguousarray(steps, dtype=np.int64)
    v = np.ascontiguousarray(values, dtype=np.float64)
    if s.ndim != 1 or s.shape != v.shape:
        raise ValueError(f"steps and values must be 1-d and of one length "
                         f"(got shapes {s.shape} and {v.shape})")
    return s, v
