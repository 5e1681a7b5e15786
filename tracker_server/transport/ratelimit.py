"""Token buckets per caller: unary requests/s and ingested points/s.

A caller is its API key id, or its peer host when auth is off. Buckets hold one
second's worth of tokens (the burst). A stream never loses data to the limiter: a
batch is always taken (the bucket may go into debt) and the stream then stops reading
until the debt is paid, so HTTP/2 flow control slows the client down.
"""

from __future__ import annotations

import time

_MAX_BUCKETS = 10_000


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, n: float) -> float:
        """Take ``n`` tokens even into debt; seconds until the balance is back at zero."""
        self._refill()
        self.tokens -= n
        return max(0.0, -self.tokens / self.rate)

    def try_take(self, n: float) -> float:
        """Take ``n`` tokens if available (0.0); else take nothing and return the wait.

        A request bigger than the burst passes when the bucket is full, so it is slowed,
        never refused forever.
        """
        self._refill()
        need = min(n, self.burst)
        if self.tokens >= need:
            self.tokens -= n
            return 0.0
        return (need - self.tokens) / self.rate

    @property
    def full(self) -> bool:
        """True when nothing was taken for a while (the bucket can be forgotten)."""
        self._refill()
        return self.tokens >= self.burst


class RateLimiter:
    """Buckets of one kind (requests or points) per caller; rate 0 means unlimited."""

    def __init__(self, rate_per_s: float) -> None:
        self.rate_per_s = rate_per_s
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def enabled(self) -> bool:
        """Whether a limit is configured."""
        return self.rate_per_s > 0

    def bucket(self, caller: str) -> TokenBucket:
        """The caller's bucket (created full)."""
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= _MAX_BUCKETS:
                self._buckets = {k: b for k, b in self._buckets.items() if not b.full}
            bucket = self._buckets[caller] = TokenBucket(self.rate_per_s, self.rate_per_s)
        return bucket


def peer_host(peer: str) -> str:
    """``ipv4:127.0.0.1:5555`` -> ``ipv4:127.0.0.1`` (one bucket across reconnects)."""
    return peer.rsplit(":", 1)[0] if peer.count(":") >= 2 else peer
