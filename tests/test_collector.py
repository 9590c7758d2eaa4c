"""FeedbackCollector: every family read from one snapshot of series states on every scrape."""

import math
import random
from collections.abc import Iterable, Iterator, Mapping

import pytest
from prometheus_client import CollectorRegistry, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from feedback_monitor.collector import FeedbackCollector
from feedback_monitor.confusion import Counts
from feedback_monitor.series import DELAY_BUCKETS, SeriesState
from feedback_monitor.store import Series

# The seed's names, which dashboards depend on, with the Counts field each reads.
COUNTERS = {
    "true_positives_total": "tp",
    "true_negatives_total": "tn",
    "false_positives_total": "fp",
    "false_negatives_total": "fn",
}
GAUGES = ("accuracy", "precision", "recall", "f1_score")
# Issue 3's families, with the SeriesState field each reads.
PREDICTION_COUNTERS = {
    "feedback_predictions_total": "predicted",
    "feedback_labelled_predictions_total": "labelled",
    "feedback_expired_predictions_total": "expired",
}
DELAY = "feedback_label_delay_seconds"
BOUNDS = [*(str(bound) for bound in DELAY_BUCKETS), "+Inf"]
PREDICTION_SAMPLES = {
    *PREDICTION_COUNTERS,
    "feedback_pending_predictions",
    "feedback_label_coverage",
}
DELAY_SAMPLES = {f"{DELAY}_bucket", f"{DELAY}_count", f"{DELAY}_sum"}
ALL_SAMPLES = {*COUNTERS, *GAUGES, *PREDICTION_SAMPLES, *DELAY_SAMPLES}
Key = tuple[str, Series, str]  # sample name, series, "le" bound or ""


class Snapshots:
    """A snapshot callable that counts its calls; tests change ``states`` between scrapes."""

    def __init__(self, states: Mapping[Series, SeriesState]) -> None:
        self.states = dict(states)
        self.calls = 0

    def __call__(self) -> Mapping[Series, SeriesState]:
        self.calls += 1
        return self.states


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def register(registry: CollectorRegistry, states: Mapping[Series, SeriesState]) -> Snapshots:
    snapshots = Snapshots(states)
    registry.register(FeedbackCollector(snapshots))
    return snapshots


def labels(series: Series, **more: str) -> dict[str, str]:
    return {"model": series[0], "version": series[1], **more}


def expected_samples(states: Mapping[Series, SeriesState]) -> Iterator[tuple[Key, float]]:
    for series, state in states.items():
        c = state.counts
        for name, field in COUNTERS.items():
            yield (name, series, ""), getattr(c, field)
        if c.total:
            for name in GAUGES:
                yield (name, series, ""), getattr(c, name)
        for name, field in PREDICTION_COUNTERS.items():
            yield (name, series, ""), getattr(state, field)
        yield (
            ("feedback_pending_predictions", series, ""),
            state.predicted - state.labelled - state.expired,
        )
        if state.predicted:
            yield ("feedback_label_coverage", series, ""), state.labelled / state.predicted
        running = 0
        for bound, count in zip(BOUNDS, state.delays, strict=True):
            running += count
            yield (f"{DELAY}_bucket", series, bound), running
        yield (f"{DELAY}_count", series, ""), sum(state.delays)
        yield (f"{DELAY}_sum", series, ""), state.delay_sum


def random_states(seed: int) -> dict[Series, SeriesState]:
    rng = random.Random(seed)
    states = {}
    for i in range(rng.randrange(1, 6)):
        predicted = rng.choice([0, rng.randrange(1, 10**6)])
        labelled = rng.randint(0, predicted)
        delays = tuple(rng.choice([0, rng.randrange(100)]) for _ in BOUNDS)
        states[f"model-{i}", f"v{rng.randrange(3)}"] = SeriesState(
            Counts(*(rng.randrange(10**6) for _ in range(4))), predicted, labelled,
            rng.randint(0, predicted - labelled), rng.random() * 1e6, delays,
        )  # fmt: skip
    return states


def test_series_without_feedback_has_zero_counters_and_no_gauges(
    registry: CollectorRegistry,
) -> None:
    series = ("default", "")
    register(registry, {series: SeriesState()})
    for name in [*COUNTERS, *PREDICTION_COUNTERS, "feedback_pending_predictions"]:
        assert registry.get_sample_value(name, labels(series)) == 0
    for name in [*GAUGES, "feedback_label_coverage"]:
        assert registry.get_sample_value(name, labels(series)) is None
    assert registry.get_sample_value(f"{DELAY}_count", labels(series)) == 0
    assert registry.get_sample_value(f"{DELAY}_bucket", labels(series, le="+Inf")) == 0


def test_families_are_declared_even_with_an_empty_snapshot(registry: CollectorRegistry) -> None:
    register(registry, {})
    families = {family.name: family.type for family in registry.collect()}
    counters = {name.removesuffix("_total") for name in [*COUNTERS, *PREDICTION_COUNTERS]}
    assert families == {
        **dict.fromkeys(counters, "counter"),
        **dict.fromkeys(
            [*GAUGES, "feedback_pending_predictions", "feedback_label_coverage"], "gauge"
        ),
        DELAY: "histogram",
        "feedback_score": "histogram",
        "feedback_drift_detected": "counter",
        "feedback_drift_status": "gauge",
    }
    for name in GAUGES:
        assert registry.get_sample_value(name, labels(("default", ""))) is None


def scraped(registry: CollectorRegistry, names: set[str]) -> dict[Key, float]:
    return samples_of(registry.collect(), names)


@pytest.mark.parametrize("seed", range(5))
def test_values_are_the_snapshot_states(registry: CollectorRegistry, seed: int) -> None:
    states = random_states(seed)
    register(registry, states)
    assert scraped(registry, ALL_SAMPLES) == pytest.approx(dict(expected_samples(states)))


def test_the_label_delay_histogram_is_cumulative(registry: CollectorRegistry) -> None:
    series = ("fraud", "v2")
    delays = (2, 0, 1, *(0,) * (len(BOUNDS) - 4), 3)  # 2 within 1 s, 1 within 60 s, 3 past 90 d
    register(registry, {series: SeriesState(predicted=6, labelled=6, delay_sum=7.5, delays=delays)})
    buckets = [registry.get_sample_value(f"{DELAY}_bucket", labels(series, le=b)) for b in BOUNDS]
    assert buckets[:3] == [2, 2, 3]
    assert buckets[-2:] == [3, 6]
    assert registry.get_sample_value(f"{DELAY}_count", labels(series)) == 6
    assert registry.get_sample_value(f"{DELAY}_sum", labels(series)) == 7.5
    assert registry.get_sample_value("feedback_label_coverage", labels(series)) == 1.0


@pytest.mark.parametrize(
    "counts", [Counts(tn=5), Counts(fn=3), Counts(fp=2), Counts(tn=1, fp=1, fn=1)], ids=repr
)
def test_zero_denominator_gives_zero_not_nan(registry: CollectorRegistry, counts: Counts) -> None:
    series = ("m", "1")
    register(registry, {series: SeriesState(counts)})
    for name in GAUGES:
        value = registry.get_sample_value(name, labels(series))
        assert value is not None
        assert not math.isnan(value)
        assert value == getattr(counts, name)


def test_every_scrape_reads_one_fresh_snapshot(registry: CollectorRegistry) -> None:
    series = ("default", "")
    snapshots = register(registry, {series: SeriesState(Counts(tp=1))})
    before = snapshots.calls
    generate_latest(registry)
    assert snapshots.calls == before + 1
    snapshots.states = {series: SeriesState(Counts(tp=2, fn=2), predicted=4, labelled=1)}
    assert registry.get_sample_value("true_positives_total", labels(series)) == 2
    assert registry.get_sample_value("recall", labels(series)) == Counts(tp=2, fn=2).recall
    assert registry.get_sample_value("feedback_pending_predictions", labels(series)) == 3


def samples_of(families: Iterable[Metric], names: set[str]) -> dict[Key, float]:
    found = {}
    for family in families:
        for sample in family.samples:
            if sample.name in names:
                series = (sample.labels["model"], sample.labels["version"])
                found[sample.name, series, sample.labels.get("le", "")] = sample.value
    return found


AWKWARD_SERIES = [
    ("default", ""),
    ('quote " and \\ backslash', "line\nbreak"),
    ("unicodé ✓", "1.0-rc{1}"),
]


def exposed_states(seed: int) -> dict[Series, SeriesState]:
    awkward = SeriesState(Counts(1, 2, 3, 4), 5, 2, 1, 12.25, tuple(range(len(BOUNDS))))
    return {
        **random_states(seed),
        **dict.fromkeys(AWKWARD_SERIES, awkward),
        ("empty", ""): SeriesState(),
    }


@pytest.mark.parametrize("seed", range(3))
def test_text_exposition_parses_back(registry: CollectorRegistry, seed: int) -> None:
    states = exposed_states(seed)
    register(registry, states)
    text = generate_latest(registry).decode()
    parsed = samples_of(parse_text(text), ALL_SAMPLES)
    assert parsed == pytest.approx(dict(expected_samples(states)))


@pytest.mark.parametrize("seed", range(3))
def test_openmetrics_exposition_parses_back(registry: CollectorRegistry, seed: int) -> None:
    states = exposed_states(seed)
    register(registry, states)
    text = openmetrics.generate_latest(registry).decode()  # type: ignore[no-untyped-call]
    assert text.endswith("# EOF\n")
    families = parse_openmetrics(text)  # type: ignore[no-untyped-call]
    parsed = samples_of(families, ALL_SAMPLES)
    assert parsed == pytest.approx(dict(expected_samples(states)))
