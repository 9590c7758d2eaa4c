"""The request metrics, kept as plain numbers, against prometheus_client's own Counter and
Histogram fed the same requests."""

import random
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from feedback_monitor.telemetry import _LATENCY_BUCKETS, Telemetry, outcome

ROUTES = ("/feedback", "/feedback/batch", "other")
STATUSES = (200, 201, 400, 404, 413, 500, 503)


def samples(registry: CollectorRegistry, prefix: str) -> dict[tuple[str, tuple[Any, ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if s.name.startswith(prefix) and not s.name.endswith("_created")
    }


@pytest.mark.parametrize("seed", range(5))
def test_requests_match_prometheus_client(seed: int) -> None:
    rng = random.Random(seed)
    ours, oracle = CollectorRegistry(), CollectorRegistry()
    telemetry = Telemetry(ours)
    requests = Counter("feedback_http_requests", "x", ("route", "outcome", "status"),
                       registry=oracle)  # fmt: skip
    duration = Histogram("feedback_http_request_duration_seconds", "x", ("route",),
                         buckets=_LATENCY_BUCKETS, registry=oracle)  # fmt: skip
    for _ in range(2000):
        route, status = rng.choice(ROUTES), rng.choice(STATUSES)
        # On a bound, just off it, or anywhere: le is inclusive.
        seconds = rng.choice(
            [rng.choice(_LATENCY_BUCKETS), rng.uniform(0, 12), rng.expovariate(300)]
        )
        telemetry.observe_request(route, status, seconds)
        requests.labels(route, outcome(status), str(status)).inc()
        duration.labels(route).observe(seconds)
    for prefix in ("feedback_http_requests", "feedback_http_request_duration_seconds"):
        expected = samples(oracle, prefix)
        actual = samples(ours, prefix)
        assert actual.keys() == expected.keys()
        for key, value in expected.items():
            assert actual[key] == pytest.approx(value), key


def test_no_request_no_samples() -> None:
    registry = CollectorRegistry()
    Telemetry(registry)
    assert samples(registry, "feedback_http_request") == {}
