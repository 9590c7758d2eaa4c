"""FeedbackCollector: the seed's counters and gauges, read from one snapshot on every scrape."""

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
from feedback_monitor.store import Series

# The seed's names, which dashboards depend on, with the Counts field each reads.
COUNTERS = {
    "true_positives_total": "tp",
    "true_negatives_total": "tn",
    "false_positives_total": "fp",
    "false_negatives_total": "fn",
}
GAUGES = ("accuracy", "precision", "recall", "f1_score")


class Snapshots:
    """A snapshot callable that counts its calls; tests change ``counts`` between scrapes."""

    def __init__(self, counts: Mapping[Series, Counts]) -> None:
        self.counts = dict(counts)
        self.calls = 0

    def __call__(self) -> Mapping[Series, Counts]:
        self.calls += 1
        return self.counts


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def register(registry: CollectorRegistry, counts: Mapping[Series, Counts]) -> Snapshots:
    snapshots = Snapshots(counts)
    registry.register(FeedbackCollector(snapshots))
    return snapshots


def labels(series: Series) -> dict[str, str]:
    return {"model": series[0], "version": series[1]}


def expected_samples(counts: Mapping[Series, Counts]) -> Iterator[tuple[str, Series, float]]:
    for series, c in counts.items():
        for name, field in COUNTERS.items():
            yield name, series, getattr(c, field)
        if c.total:
            for name in GAUGES:
                yield name, series, getattr(c, name)


def random_counts(seed: int) -> dict[Series, Counts]:
    rng = random.Random(seed)
    return {
        (f"model-{i}", f"v{rng.randrange(3)}"): Counts(*(rng.randrange(10**6) for _ in range(4)))
        for i in range(rng.randrange(1, 6))
    }


def test_series_without_feedback_has_zero_counters_and_no_gauges(
    registry: CollectorRegistry,
) -> None:
    series = ("default", "")
    register(registry, {series: Counts()})
    for name in COUNTERS:
        assert registry.get_sample_value(name, labels(series)) == 0
    for name in GAUGES:
        assert registry.get_sample_value(name, labels(series)) is None


def test_families_are_declared_even_with_an_empty_snapshot(registry: CollectorRegistry) -> None:
    register(registry, {})
    families = {family.name: family.type for family in registry.collect()}
    expected = {name.removesuffix("_total"): "counter" for name in COUNTERS}
    assert families == {**expected, **dict.fromkeys(GAUGES, "gauge")}
    for name in GAUGES:
        assert registry.get_sample_value(name, labels(("default", ""))) is None


@pytest.mark.parametrize("seed", range(5))
def test_values_are_the_snapshot_counts_and_metrics(registry: CollectorRegistry, seed: int) -> None:
    counts = random_counts(seed)
    register(registry, counts)
    for name, series, value in expected_samples(counts):
        assert registry.get_sample_value(name, labels(series)) == value


@pytest.mark.parametrize(
    "counts", [Counts(tn=5), Counts(fn=3), Counts(fp=2), Counts(tn=1, fp=1, fn=1)], ids=repr
)
def test_zero_denominator_gives_zero_not_nan(registry: CollectorRegistry, counts: Counts) -> None:
    series = ("m", "1")
    register(registry, {series: counts})
    for name in GAUGES:
        value = registry.get_sample_value(name, labels(series))
        assert value is not None
        assert not math.isnan(value)
        assert value == getattr(counts, name)


def test_every_scrape_reads_one_fresh_snapshot(registry: CollectorRegistry) -> None:
    series = ("default", "")
    snapshots = register(registry, {series: Counts(tp=1)})
    before = snapshots.calls
    generate_latest(registry)
    assert snapshots.calls == before + 1
    snapshots.counts = {series: Counts(tp=2, fn=2)}
    assert registry.get_sample_value("true_positives_total", labels(series)) == 2
    assert registry.get_sample_value("recall", labels(series)) == Counts(tp=2, fn=2).recall


def samples_of(families: Iterable[Metric], names: set[str]) -> dict[tuple[str, Series], float]:
    found = {}
    for family in families:
        for sample in family.samples:
            if sample.name in names:
                series = (sample.labels["model"], sample.labels["version"])
                found[sample.name, series] = sample.value
    return found


AWKWARD_SERIES = [
    ("default", ""),
    ('quote " and \\ backslash', "line\nbreak"),
    ("unicodé ✓", "1.0-rc{1}"),
]


@pytest.mark.parametrize("seed", range(3))
def test_text_exposition_parses_back(registry: CollectorRegistry, seed: int) -> None:
    counts = {**random_counts(seed), **dict.fromkeys(AWKWARD_SERIES, Counts(1, 2, 3, 4))}
    counts[("empty", "")] = Counts()
    register(registry, counts)
    text = generate_latest(registry).decode()
    expected = {(name, s): v for name, s, v in expected_samples(counts)}
    assert samples_of(parse_text(text), {*COUNTERS, *GAUGES}) == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(3))
def test_openmetrics_exposition_parses_back(registry: CollectorRegistry, seed: int) -> None:
    counts = {**random_counts(seed), **dict.fromkeys(AWKWARD_SERIES, Counts(4, 3, 2, 1))}
    counts[("empty", "")] = Counts()
    register(registry, counts)
    text = openmetrics.generate_latest(registry).decode()  # type: ignore[no-untyped-call]
    assert text.endswith("# EOF\n")
    expected = {(name, s): v for name, s, v in expected_samples(counts)}
    families = parse_openmetrics(text)  # type: ignore[no-untyped-call]
    assert samples_of(families, {*COUNTERS, *GAUGES}) == pytest.approx(expected)
