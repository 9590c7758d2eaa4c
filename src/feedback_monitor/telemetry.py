"""The service's own health metrics (per process), on the registry the app is given."""

import bisect
import itertools
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)


def outcome(status: int) -> str:
    """accepted, invalid (the client's fault) or error (ours)."""
    if status >= 500:
        return "error"
    return "invalid" if status >= 400 else "accepted"


class Requests(Collector):
    """Requests by route and status, and their durations by route, kept as plain numbers.

    Every request passes here: a dict update and a bisection cost a fifth of what
    prometheus_client's Counter and Histogram take (their locks serve threads; only the event
    loop's thread counts here and scrapes). A scrape turns them into the two families.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._counts: dict[tuple[str, int], int] = {}
        self._buckets: dict[str, list[int]] = {}  # per route: observations per bucket, +Inf last
        self._sums: dict[str, float] = {}
        registry.register(self)

    def observe(self, route: str, status: int, seconds: float) -> None:
        key = route, status
        self._counts[key] = self._counts.get(key, 0) + 1
        buckets = self._buckets.get(route)
        if buckets is None:  # the routes are few and known: bounded
            buckets = self._buckets[route] = [0] * (len(_LATENCY_BUCKETS) + 1)
            self._sums[route] = 0.0
        buckets[bisect.bisect_left(_LATENCY_BUCKETS, seconds)] += 1  # le is inclusive
        self._sums[route] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "feedback_http_requests",
            "HTTP requests by route, outcome (accepted, invalid, error) and status code.",
            labels=("route", "outcome", "status"),
        )
        for (route, status), count in sorted(self._counts.items()):
            requests.add_metric([route, outcome(status), str(status)], count)
        yield requests
        duration = HistogramMetricFamily(
            "feedback_http_request_duration_seconds",
            "Time from request start to the end of the response, by route.",
            labels=("route",),
        )
        bounds = [*map(floatToGoString, _LATENCY_BUCKETS), "+Inf"]
        for route, counts in sorted(self._buckets.items()):
            cumulative = list(zip(bounds, itertools.accumulate(counts), strict=True))
            duration.add_metric([route], cumulative, self._sums[route])
        yield duration


class Telemetry:
    """Request, validation and commit metrics, prefixed ``feedback_``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Requests(registry)
        self.observe_request = self.requests.observe  # every request: no call in between
        self.validation_errors = Counter(
            "feedback_validation_errors",
            "Requests refused with a 4xx, by a short stable reason.",
            ("reason",),
            registry=registry,
        )
        self.commit_batch_size = Histogram(
            "feedback_commit_batch_size",
            "Records stored by one transaction (group commit): feedback counted, predictions kept.",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.commit_duration = Histogram(
            "feedback_commit_duration_seconds",
            "Time of one durable commit on the store, fsync included.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )

    def observe_commit(self, size: int, seconds: float) -> None:
        self.commit_batch_size.observe(size)
        self.commit_duration.observe(seconds)
