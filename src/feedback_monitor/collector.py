"""The Prometheus custom collector: every scrape reads one snapshot of committed counts."""

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from feedback_monitor.confusion import Counts
from feedback_monitor.store import Series

LABELS = ("model", "version")
DEFAULT_SERIES = ("default", "")

_COUNTERS = (
    ("true_positives", "Feedback with prediction 1 and actual 1.", "tp"),
    ("true_negatives", "Feedback with prediction 0 and actual 0.", "tn"),
    ("false_positives", "Feedback with prediction 1 and actual 0.", "fp"),
    ("false_negatives", "Feedback with prediction 0 and actual 1.", "fn"),
)
_GAUGES = (
    ("accuracy", "(TP + TN) / all feedback, over all committed feedback."),
    ("precision", "TP / (TP + FP), over all committed feedback; 0 when undefined."),
    ("recall", "TP / (TP + FN), over all committed feedback; 0 when undefined."),
    ("f1_score", "Harmonic mean of precision and recall; 0 when undefined."),
)


class FeedbackCollector(Collector):
    """Yields the seed's counters and gauges per (model, version), fresh on every scrape."""

    def __init__(self, snapshot: Callable[[], Mapping[Series, Counts]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        # One consistent copy for the whole scrape; before any feedback, the default series at 0.
        counts = dict(self._snapshot()) or {DEFAULT_SERIES: Counts()}
        for name, documentation, field in _COUNTERS:
            family = CounterMetricFamily(name, documentation, labels=LABELS)
            for series, c in counts.items():
                family.add_metric(series, getattr(c, field))
            yield family
        for name, documentation in _GAUGES:
            gauge = GaugeMetricFamily(name, documentation, labels=LABELS)
            for series, c in counts.items():
                if c.total:  # before any feedback a ratio has no value to report
                    gauge.add_metric(series, getattr(c, name))
            yield gauge
