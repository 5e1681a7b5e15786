"""Time and retry pacing, injectable so retry logic is testable with fake time."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol


class Clock(Protocol):
    """What the delivery threads need of time."""

    def monotonic(self) -> float:
        """Seconds on a monotonic clock."""

    def sleep(self, seconds: float, wake: threading.Event) -> bool:
        """Sleep up to ``seconds``; return True early when ``wake`` is set."""


class RealClock:
    """The process clock."""

    def monotonic(self) -> float:
        """time.monotonic()."""
        return time.monotonic()

    def sleep(self, seconds: float, wake: threading.Event) -> bool:
        """Event.wait, so close() interrupts a back-off at once."""
        return wake.wait(max(0.0, seconds))


REAL_CLOCK = RealClock()


@dataclass
class Backoff:
    """Exponential back-off with jitter, reset after a successful connection.

    Jitter is "equal jitter": a delay in [d/2, d] so that ranks of a big job that lost
    the server at the same moment do not reconnect in lock-step, while the delay still
    grows (full jitter could retry at once many times in a row).
    """

    initial_s: float = 0.1
    max_s: float = 10.0
    multiplier: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    _current: float = 0.0

    def next_delay(self, at_least_s: float = 0.0) -> float:
        """Delay before the next attempt; ``at_least_s`` honours a server retry hint."""
        self._current = (self.initial_s if self._current == 0.0
                         else min(self.max_s, self._current * self.multiplier))
        delay = self._current * (0.5 + 0.5 * self.rng.random())
        return max(delay, at_least_s)

    def reset(self) -> None:
        """After a success: the next failure starts from ``initial_s`` again."""
        self._current = 0.0


# Wall times. The client's own clock readings are stamped at a resolution
# (Options.wall_time_resolution_ns, 1 ms by default): digits below a training loop's own
# jitter are noise, and noise is what the storage codec's delta-of-delta coding of wall
# times cannot compress. A float ``time.time()`` given by the caller carries ~0.2 us of
# precision at today's epoch, so it is kept to the microsecond: all it holds.


def wall_now_ns(resolution_ns: int) -> int:
    """Now, as nanoseconds since the Unix epoch, truncated to ``resolution_ns``."""
    return time.time_ns() // resolution_ns * resolution_ns


def wall_ns_from_seconds(seconds: float) -> int:
    """Seconds since the epoch (as ``time.time()``) -> nanoseconds, at whole microseconds."""
    return round(seconds * 1e6) * 1000
