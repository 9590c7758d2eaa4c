"""The service's own health metrics (per process), on the registry the app is given."""

from prometheus_client import CollectorRegistry, Counter, Histogram

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)


def outcome(status: int) -> str:
    """accepted, invalid (the client's fault) or error (ours)."""
    if status >= 500:
        return "error"
    return "invalid" if status >= 400 else "accepted"


class Telemetry:
    """Request, validation and commit metrics, prefixed ``feedback_``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "feedback_http_requests",
            "HTTP requests by route, outcome (accepted, invalid, error) and status code.",
            ("route", "outcome", "status"),
            registry=registry,
        )
        self.validation_errors = Counter(
            "feedback_validation_errors",
            "Rejected request bodies by reason.",
            ("reason",),
            registry=registry,
        )
        self.duration = Histogram(
            "feedback_http_request_duration_seconds",
            "Time from request start to the end of the response, by route.",
            ("route",),
            buckets=_LATENCY_BUCKETS,
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
        # labels() takes a lock and builds a key on every call; the hot path looks children up here.
        self._children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def observe_commit(self, size: int, seconds: float) -> None:
        self.commit_batch_size.observe(size)
        self.commit_duration.observe(seconds)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        try:
            count, duration = self._children[route, status]
        except KeyError:  # first request of its kind; the label sets stay bounded by the routes
            count = self.requests.labels(route, outcome(status), str(status))
            duration = self.duration.labels(route)
            self._children[route, status] = count, duration
        count.inc()
        duration.observe(seconds)
