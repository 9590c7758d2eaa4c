"""The feedback metrics' names, help texts and values, and a prometheus_client Collector of them.

``/metrics`` renders these families itself (``exposition.py``, much faster at many series); the
Collector serves anyone embedding the snapshot in a registry of their own, and the tests as the
reference the fast rendering must equal.
"""

from collections.abc import Callable, Iterator, Mapping
from itertools import accumulate

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from feedback_monitor.scores import ScoreHistogram
from feedback_monitor.series import DELAY_BUCKETS, SCORE_BINS, Series, SeriesState

Value = Callable[[SeriesState], float]
LABELS = ("model", "version")
DEFAULT_SERIES = ("default", "")

COUNTERS: tuple[tuple[str, str, Value], ...] = (
    ("true_positives", "Feedback with prediction 1 and actual 1.", lambda s: s.counts.tp),
    ("true_negatives", "Feedback with prediction 0 and actual 0.", lambda s: s.counts.tn),
    ("false_positives", "Feedback with prediction 1 and actual 0.", lambda s: s.counts.fp),
    ("false_negatives", "Feedback with prediction 0 and actual 1.", lambda s: s.counts.fn),
    ("feedback_predictions", "Predictions stored through /predictions.", lambda s: s.predicted),
    ("feedback_labelled_predictions", "Stored predictions joined by their feedback.",
     lambda s: s.labelled),
    ("feedback_expired_predictions", "Stored predictions dropped unlabelled after the TTL.",
     lambda s: s.expired),
)  # fmt: skip
GAUGES: tuple[tuple[str, str, Value], ...] = (
    ("accuracy", "(TP + TN) / all feedback, over all committed feedback.",
     lambda s: s.counts.accuracy),
    ("precision", "TP / (TP + FP), over all committed feedback; 0 when undefined.",
     lambda s: s.counts.precision),
    ("recall", "TP / (TP + FN), over all committed feedback; 0 when undefined.",
     lambda s: s.counts.recall),
    ("f1_score", "Harmonic mean of precision and recall; 0 when undefined.",
     lambda s: s.counts.f1_score),
)  # fmt: skip
PENDING = ("feedback_pending_predictions", "Stored predictions waiting for a label.")
COVERAGE = (
    "feedback_label_coverage",
    "Labelled share of the predictions stored through /predictions.",
)
DELAY = (
    "feedback_label_delay_seconds",
    "From the prediction's timestamp to the arrival of its label.",
)
BOUNDS = [repr(bound) for bound in DELAY_BUCKETS] + ["+Inf"]  # the histogram's le labels
SCORE = (
    "feedback_score",
    "The model's score (its probability of class 1) of scored feedback, by actual class.",
)
SCORE_LABELS = (*LABELS, "actual")
DRIFT_DETECTED = (
    "feedback_drift_detected",
    "Drifts found by each detector in the series' stream of committed outcomes.",
)
DRIFT_STATUS = ("feedback_drift_status", "Each detector's status: 0 stable, 1 warning, 2 drift.")
DRIFT_LABELS = (*LABELS, "detector")
SCORE_BOUNDS = [repr(i / SCORE_BINS) for i in range(1, SCORE_BINS + 1)] + ["+Inf"]


def score_buckets(scores: ScoreHistogram, actual: int) -> tuple[list[tuple[str, int]], float]:
    """One actual class's cumulative buckets (``le`` label, count) and its score sum."""
    counts = scores.counts[actual]
    cumulative = [*accumulate(counts), sum(counts)]  # +Inf: scores end at 1.0
    return list(zip(SCORE_BOUNDS, cumulative, strict=True)), sum(scores.score_sums[actual])


class FeedbackCollector(Collector):
    """Yields every series' metrics, fresh on every scrape."""

    def __init__(self, snapshot: Callable[[], Mapping[Series, SeriesState]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        # One consistent copy for the whole scrape; before any feedback, the default series at 0.
        states = dict(self._snapshot()) or {DEFAULT_SERIES: SeriesState()}
        for name, documentation, value in COUNTERS:
            counter = CounterMetricFamily(name, documentation, labels=LABELS)
            for series, state in states.items():
                counter.add_metric(series, value(state))
            yield counter
        for name, documentation, value in GAUGES:
            gauge = GaugeMetricFamily(name, documentation, labels=LABELS)
            for series, state in states.items():
                if state.counts.total:  # before any feedback a ratio has no value to report
                    gauge.add_metric(series, value(state))
            yield gauge
        yield from self._predictions(states)

    def _predictions(self, states: Mapping[Series, SeriesState]) -> Iterator[Metric]:
        pending = GaugeMetricFamily(*PENDING, labels=LABELS)
        coverage = GaugeMetricFamily(*COVERAGE, labels=LABELS)
        delay = HistogramMetricFamily(*DELAY, labels=LABELS)
        for series, state in states.items():
            pending.add_metric(series, state.pending)
            if state.predicted:
                coverage.add_metric(series, state.label_coverage)
            buckets = list(zip(BOUNDS, accumulate(state.delays), strict=True))
            delay.add_metric(series, buckets, state.delay_sum)
        yield from (pending, coverage, delay)
        yield self._scores(states)
        yield from self._drift(states)

    def _drift(self, states: Mapping[Series, SeriesState]) -> Iterator[Metric]:
        detected = CounterMetricFamily(*DRIFT_DETECTED, labels=DRIFT_LABELS)
        status = GaugeMetricFamily(*DRIFT_STATUS, labels=DRIFT_LABELS)
        for series, state in states.items():
            for detector in state.drift:
                detected.add_metric([*series, detector.detector], detector.detections)
                status.add_metric([*series, detector.detector], detector.status)
        yield from (detected, status)

    def _scores(self, states: Mapping[Series, SeriesState]) -> Metric:
        family = HistogramMetricFamily(*SCORE, labels=SCORE_LABELS)
        for series, state in states.items():
            if state.scores is not None:
                for actual in (0, 1):
                    family.add_metric([*series, str(actual)], *score_buckets(state.scores, actual))
        return family
