"""A token-bucket rate limit per client: ``rate`` requests a second, bursts of ``burst``."""

import time
from collections.abc import Callable, Hashable

MAX_CLIENTS = 10_000
"""Buckets kept: past them the least recently seen client is forgotten, so memory stays bounded
and each request costs the same however many clients come."""


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
        # key: (level, when), least recently seen first
        self.buckets: dict[Hashable, tuple[float, float]] = {}

    def wait(self, key: Hashable) -> float:
        """0 when ``key`` may go now (and its request is counted), else the seconds to wait.

        >>> limiter = RateLimiter(2.0, clock=lambda: 0.0)
        >>> [limiter.wait("client") for _ in range(3)]
        [0.0, 0.0, 0.5]
        """
        now = self.clock()
        level, when = self.buckets.pop(key, (self.burst, now))  # back in last: the most recent
        level = min(self.burst, level + (now - when) * self.rate)
        allowed = level >= 1.0
        self.buckets[key] = (level - 1.0 if allowed else level, now)
        if len(self.buckets) > self.max_clients:
            # Most likely refilled, so forgetting it changes no answer; if not, it is one of
            # more clients than the cap, which together could have had as many bursts anyway.
            del self.buckets[next(iter(self.buckets))]
        return 0.0 if allowed else (1.0 - level) / self.rate
