"""A token-bucket rate limit per client: ``rate`` requests a second, bursts of ``burst``."""

import time
from collections.abc import Callable, Hashable

MAX_CLIENTS = 10_000
"""Buckets kept: memory stays bounded, and each request costs the same however many come."""


class RateLimiter:
    """One bucket per key holding up to ``burst`` requests, refilled at ``rate`` a second.

    Past ``max_clients`` a new client takes the place of the least recently seen one if that
    one's bucket has refilled (forgetting it changes no answer); else the new client waits for
    it. Forgetting a bucket still filling would give its client a new burst: one rotating more
    addresses than the cap would pass every time.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)  # one second's worth
        self.clock = clock
        self.max_clients = max_clients
        # key: (level, when), least recently seen first
        self.buckets: dict[Hashable, tuple[float, float]] = {}

    def wait(self, key: Hashable) -> float:
        """0 when ``key`` may go now (and its request is counted), else the seconds to wait.

        >>> limiter = RateLimiter(2.0, clock=lambda: 0.0)
        >>> [limiter.wait("client") for _ in range(3)]
        [0.0, 0.0, 0.5]
        """
        now = self.clock()
        found = self.buckets.pop(key, None)  # back in last: the most recently seen
        if found is None and len(self.buckets) >= self.max_clients:
            oldest = next(iter(self.buckets))
            full_in = self._refill(*self.buckets[oldest], now)
            if full_in > 0.0:
                return full_in
            del self.buckets[oldest]
        level, when = found or (self.burst, now)
        level = min(self.burst, level + (now - when) * self.rate)
        allowed = level >= 1.0
        self.buckets[key] = (level - 1.0 if allowed else level, now)
        return 0.0 if allowed else (1.0 - level) / self.rate

    def _refill(self, level: float, when: float, now: float) -> float:
        """The seconds until a bucket is full again; 0 if it is."""
        return max(0.0, (self.burst - level) / self.rate - (now - when))
