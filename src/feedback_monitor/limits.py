"""A token-bucket rate limit per client: ``rate`` requests a second, bursts of ``burst``."""

import time
from collections.abc import Callable, Hashable

MAX_CLIENTS = 10_000
"""Buckets kept before the full ones (idle clients) are forgotten: memory stays bounded."""


class RateLimiter:
    """One bucket per key holding up to ``burst`` requests, refilled at ``rate`` a second."""

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
        self.buckets: dict[Hashable, tuple[float, float]] = {}  # key: (level, when)

    def wait(self, key: Hashable) -> float:
        """0 when ``key`` may go now (and its request is counted), else the seconds to wait.

        >>> limiter = RateLimiter(2.0, clock=lambda: 0.0)
        >>> [limiter.wait("client") for _ in range(3)]
        [0.0, 0.0, 0.5]
        """
        now = self.clock()
        level, when = self.buckets.get(key, (self.burst, now))
        level = min(self.burst, level + (now - when) * self.rate)
        if level >= 1.0:
            if key not in self.buckets and len(self.buckets) >= self.max_clients:
                self._forget_idle(now)
            self.buckets[key] = (level - 1.0, now)
            return 0.0
        self.buckets[key] = (level, now)
        return (1.0 - level) / self.rate

    def _forget_idle(self, now: float) -> None:
        """Drop the buckets that have refilled: forgetting them changes no answer."""
        self.buckets = {
            key: (level, when)
            for key, (level, when) in self.buckets.items()
            if level + (now - when) * self.rate < self.burst
        }
