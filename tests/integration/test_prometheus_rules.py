"""deploy/: the rules pass promtool's lint and unit tests, the example configs pass their checkers,
and a real Prometheus scraping the service records the expected ratios and fires on a drop."""

import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score
from statsmodels.stats.proportion import proportion_confint  # type: ignore[import-untyped]

from feedback_monitor.testing import ServiceProcess
from tests.integration.helpers import CELLS, COUNTERS, Labels, wait_until
from tests.integration.prometheus import (
    ALERTMANAGER_CONFIG,
    JOB,
    PROMETHEUS_CONFIG,
    RULE_TESTS,
    RULES,
    TEST_WINDOWS,
    Prometheus,
    prometheus,
    require,
    run,
    short_windows,
)

pytestmark = pytest.mark.integration

SERIES = f'job="{JOB}",model="default"'  # feedback without a model lands in the default series
GOOD = {"tp": 150, "tn": 210, "fp": 25, "fn": 15}  # accuracy 0.9, F1 0.88: no alert
BAD = {"tp": 200, "tn": 200, "fp": 200, "fn": 200}  # accuracy 0.5: drags the hour under 0.7
WINDOWS = ("5m", "1h", "1d")  # of the windowed rules; TEST_WINDOWS also maps the merge's 2m
RATIOS = ("accuracy", "precision", "recall", "f1_score")
T = TypeVar("T")


def assert_succeeds(*args: str | Path) -> str:
    checked = run(*args)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return checked.stdout


def test_rules_pass_promtool_check_with_lint_fatal() -> None:
    assert_succeeds(require("promtool", "prometheus"), "check", "rules", "--lint-fatal", RULES)


def test_rules_pass_their_promtool_unit_tests() -> None:
    assert len(RULE_TESTS) >= 2
    out = assert_succeeds(require("promtool", "prometheus"), "test", "rules", *RULE_TESTS)
    assert out.count("SUCCESS") == len(RULE_TESTS)


def test_the_short_variant_changes_only_durations_and_passes_the_check(tmp_path: Path) -> None:
    source = RULES.read_text()
    short = short_windows(source)
    assert "[5m]" in source
    assert "offset 1d" in source
    for window in TEST_WINDOWS:
        assert f"[{window}]" not in short
        assert f"offset {window}" not in short
    holds = [line.strip() for line in short.splitlines() if line.strip().startswith("for:")]
    assert holds == ["for: 1s"] * source.count("\n        for: ")
    assert [line for line in short.splitlines() if "record:" in line or "alert:" in line] == [
        line for line in source.splitlines() if "record:" in line or "alert:" in line
    ]
    (tmp_path / "short.yml").write_text(short)
    assert_succeeds(require("promtool", "prometheus"), "check", "rules", tmp_path / "short.yml")


def test_example_prometheus_config_passes_promtool_check_config() -> None:
    out = assert_succeeds(require("promtool", "prometheus"), "check", "config", PROMETHEUS_CONFIG)
    assert "1 rule files found" in out


def test_example_alertmanager_config_passes_amtool_check_config() -> None:
    amtool = require("amtool", "prometheus-alertmanager")
    assert "1 inhibit rules" in assert_succeeds(amtool, "check-config", ALERTMANAGER_CONFIG)


@pytest.mark.parametrize(
    ("severity", "receiver"), [("critical", "pager"), ("warning", "chat"), ("info", "chat")]
)
def test_alertmanager_routes_by_severity(severity: str, receiver: str) -> None:
    amtool = require("amtool", "prometheus-alertmanager")
    config = f"--config.file={ALERTMANAGER_CONFIG}"
    labels = ("alertname=FeedbackAccuracyLow", "model=m", f"severity={severity}")
    routed = assert_succeeds(amtool, "config", "routes", "test", config, *labels)
    assert routed.strip() == receiver


def stream(counts: dict[str, int], seed: int) -> list[tuple[int, int]]:
    """(prediction, actual) pairs with exactly ``counts`` of each cell, in a seeded order."""
    pairs = [CELLS[cell] for cell, count in counts.items() for _ in range(count)]
    random.Random(seed).shuffle(pairs)
    return pairs


def send(client: httpx.Client, pairs: list[tuple[int, int]]) -> None:
    items = [{"prediction": prediction, "actual": actual} for prediction, actual in pairs]
    assert client.post("/feedback/batch", json={"items": items}).status_code == 200


def expected_ratios(pairs: list[tuple[int, int]]) -> dict[str, float]:
    """scikit-learn's figures for the whole stream."""
    predicted = [prediction for prediction, _ in pairs]
    actual = [label for _, label in pairs]
    return {
        "accuracy": float(accuracy_score(actual, predicted)),
        "precision": float(precision_score(actual, predicted)),
        "recall": float(recall_score(actual, predicted)),
        "f1_score": float(f1_score(actual, predicted)),
    }


def by_name(vector: Mapping[Labels, T]) -> dict[str, T]:
    return {dict(labels)["__name__"]: value for labels, value in vector.items()}


def wait_for_scrape(api: Prometheus, counts: dict[str, int]) -> float:
    """When Prometheus has scraped ``counts`` as the counters' values: that scrape's time."""
    selector = f'{{__name__=~"{"|".join(COUNTERS.values())}",{SERIES}}}'
    wanted = {COUNTERS[cell]: float(count) for cell, count in counts.items()}
    wait_until(lambda: by_name(api.query(selector)) == wanted, what=f"a scrape of {counts}")
    return max(time for time, _ in api.latest(selector).values())


def rules_after(api: Prometheus, scraped: float) -> dict[str, float]:
    """The recording rules of the default series, all evaluated after ``scraped``."""
    selector = f'{{__name__=~"model_version:.*",{SERIES}}}'
    names = {f"model_version:feedback_{r}:ratio_increase{w}" for r in RATIOS for w in WINDOWS}
    latest: dict[str, tuple[float, float]] = {}

    def evaluated() -> bool:
        latest.update(by_name(api.latest(selector)))
        return names <= latest.keys() and min(t for t, _ in latest.values()) > scraped + 0.5

    wait_until(evaluated, what="the rules evaluated after the scrape")
    return {name: value for name, (_, value) in latest.items()}


def firing(api: Prometheus, alertname: str) -> list[dict[str, str]]:
    return [
        alert["labels"]
        for alert in api.alerts()
        if alert["labels"]["alertname"] == alertname and alert["state"] == "firing"
    ]


def active_model_alerts(api: Prometheus) -> list[str]:
    names = ("FeedbackAccuracyLow", "FeedbackAccuracyCritical", "FeedbackF1Low")
    return [a["labels"]["alertname"] for a in api.alerts() if a["labels"]["alertname"] in names]


@pytest.fixture
def api(service: ServiceProcess, tmp_path: Path) -> Iterator[Prometheus]:
    """A real Prometheus with the short variant of the rules, having scraped the service's zeros."""
    rules = short_windows(RULES.read_text())
    target = service.url.removeprefix("http://")
    with (
        open(tmp_path / "prometheus.log", "ab") as log,
        prometheus(tmp_path, target, rules, log) as started,
    ):
        # A few scrapes before any feedback: every window then starts from the counters at 0.
        zeros = f"max(count_over_time(true_positives_total{{{SERIES}}}[1m]))"
        wait_until(lambda: started.query(zeros).get((), 0.0) >= 3, what="3 scrapes of zeros")
        yield started


def test_real_prometheus_records_the_expected_ratios_and_fires_on_a_drop(
    api: Prometheus, client: httpx.Client
) -> None:
    good = stream(GOOD, seed=1)
    send(client, good)
    rules = rules_after(api, wait_for_scrape(api, GOOD))

    # Every window still reaches back to the zeros, so each holds the whole stream: increase()
    # scales the four counters by one extrapolation factor, which the ratios cancel.
    for window in WINDOWS:
        for ratio, value in expected_ratios(good).items():
            name = f"model_version:feedback_{ratio}:ratio_increase{window}"
            assert rules[name] == pytest.approx(value, rel=1e-9), name
        samples = rules[f"model_version:feedback_samples:increase{window}"]
        assert len(good) <= samples <= 1.5 * len(good)
        for cell, count in GOOD.items():
            name = f"model_version:{COUNTERS[cell].removesuffix('_total')}:increase{window}"
            assert rules[name] / samples == pytest.approx(count / len(good), rel=1e-9), name
    # The alerts' bound, against statsmodels' Wilson interval of the window's counts.
    samples, accuracy = (
        rules[f"model_version:feedback_{r}increase1h"] for r in ("samples:", "accuracy:ratio_")
    )
    _, upper = proportion_confint(accuracy * samples, samples, alpha=0.05, method="wilson")
    bound = rules["model_version:feedback_accuracy:wilson_upper_increase1h"]
    assert bound == pytest.approx(upper, rel=1e-9)
    assert active_model_alerts(api) == []

    send(client, stream(BAD, seed=2))
    wait_until(lambda: firing(api, "FeedbackAccuracyCritical") != [], what="alert firing")
    [labels] = firing(api, "FeedbackAccuracyCritical")
    assert (labels["model"], labels["severity"], labels["job"]) == ("default", "critical", JOB)


def test_a_new_models_first_batch_is_in_the_window(api: Prometheus, client: httpx.Client) -> None:
    """A model's counters start at its first commit, a whole batch here, which increase() alone
    cannot see: the rules count a series new within the window with its value, once Prometheus
    has recorded the job for a window (the 5m rule's, 30 s here)."""
    scraped = f"max(count_over_time(true_positives_total{{{SERIES}}}[1m]))"
    wait_until(lambda: api.query(scraped).get((), 0.0) > 32, 90.0, what="30 s of scrapes")
    pairs = stream(GOOD, seed=3)
    items = [{"prediction": p, "actual": a, "model": "burst"} for p, a in pairs]
    assert client.post("/feedback/batch", json={"items": items}).status_code == 200
    selector = '{__name__=~"model_version:.*increase5m",model="burst"}'
    names = {f"model_version:feedback_{ratio}:ratio_increase5m" for ratio in RATIOS}
    found: dict[str, float] = {}

    def recorded_whole() -> bool:
        found.update(by_name(api.query(selector)))
        return names <= found.keys() and found["model_version:feedback_samples:increase5m"] > 0

    wait_until(recorded_whole, what="the burst in the 5m rules")
    assert found["model_version:feedback_samples:increase5m"] == len(pairs)
    for ratio, value in expected_ratios(pairs).items():
        name = f"model_version:feedback_{ratio}:ratio_increase5m"
        assert found[name] == pytest.approx(value, rel=1e-9), name
