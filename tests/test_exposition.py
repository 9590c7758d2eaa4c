"""The hand-rendered /metrics families against prometheus_client's rendering of the collector."""

import random
import shutil
import subprocess

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from feedback_monitor.collector import FeedbackCollector
from feedback_monitor.confusion import Counts
from feedback_monitor.drift.watch import DETECTORS
from feedback_monitor.exposition import Exposition
from feedback_monitor.scores import ScoreHistogram
from feedback_monitor.series import DELAY_BUCKETS, SCORE_BINS, DriftStatus, Series, SeriesState

Sample = tuple[str, tuple[tuple[str, str], ...], float]


def random_states(seed: int, size: int) -> dict[Series, SeriesState]:
    rng = random.Random(seed)
    states = {}
    for i in range(size):
        predicted = rng.choice([0, rng.randint(1, 10**6)])
        labelled = rng.randint(0, predicted)
        counts = Counts(*(rng.choice([0, rng.randint(0, 10**9)]) for _ in range(4)))
        delays = tuple(rng.randint(0, 50) for _ in range(len(DELAY_BUCKETS) + 1))
        version = rng.choice(["", "v1", "2024-01-01:a.b_c-d"])
        scored = [(rng.random(), rng.randint(0, 1)) for _ in range(rng.choice([0, 30]))]
        scores = ScoreHistogram.of(scored, SCORE_BINS) if scored else None
        drift = tuple(
            DriftStatus(name, rng.randint(0, 2), rng.randint(0, 5)) for name in DETECTORS
        ) if counts.total else ()  # fmt: skip
        states[f"m{i}", version] = SeriesState(
            counts, predicted, labelled, rng.randint(0, predicted - labelled),
            rng.random() * 1e6, delays, scores, drift,
        )  # fmt: skip
    return states


def samples(families: object) -> list[Sample]:
    return sorted(
        (s.name, tuple(sorted(s.labels.items())), s.value)
        for family in families  # type: ignore[attr-defined]
        for s in family.samples
    )


def reference(states: dict[Series, SeriesState]) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(FeedbackCollector(lambda: states))
    return registry


@pytest.mark.parametrize("seed", range(5))
def test_text_format_has_the_collectors_samples(seed: int) -> None:
    states = random_states(seed, 50)
    ours = Exposition(lambda: states).render(openmetrics=False)
    assert samples(parse_text(ours)) == samples(
        parse_text(generate_latest(reference(states)).decode())
    )


@pytest.mark.parametrize("seed", range(5))
def test_openmetrics_has_the_collectors_samples(seed: int) -> None:
    states = random_states(seed, 50)
    ours = Exposition(lambda: states).render(openmetrics=True) + "# EOF\n"
    theirs = generate_openmetrics(reference(states)).decode()  # type: ignore[no-untyped-call]
    assert samples(parse_om(ours)) == samples(parse_om(theirs))  # type: ignore[no-untyped-call]


def test_empty_snapshot_shows_the_default_series_at_zero() -> None:
    ours = Exposition(dict).render(openmetrics=False)
    assert samples(parse_text(ours)) == samples(parse_text(generate_latest(reference({})).decode()))
    assert 'true_positives_total{model="default",version=""} 0.0' in ours


def test_a_changed_series_is_rendered_anew_and_the_others_are_kept() -> None:
    states = random_states(7, 20)
    exposition = Exposition(lambda: states)
    exposition.render(openmetrics=False)
    series = next(iter(states))
    states[series] = SeriesState(Counts(tp=123456789))
    text = exposition.render(openmetrics=False)
    assert samples(parse_text(text)) == samples(
        parse_text(generate_latest(reference(states)).decode())
    )


def test_promtool_accepts_the_text_format(tmp_path: object) -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool (Debian package prometheus) is needed"
    text = Exposition(lambda: random_states(3, 30)).render(openmetrics=False)
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == ""
