"""The window and series API of a real server against scikit-learn and statsmodels on the same
outcomes: every metric, interval, score metric and cost value, in both time views."""

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from feedback_monitor.windows import DAY, HOUR, MINUTE, TimeView, parse_duration
from tests.integration.helpers import serving
from tests.integration.views import Series
from tests.integration.windows_stream import (
    POINTS,
    SERIES,
    WINDOW,
    Outcome,
    Sender,
    read,
    within,
)
from tests.window_oracle import assert_score_metrics, assert_window_metrics, confusion

pytestmark = pytest.mark.integration

COSTS = {  # the most specific applies: fraud v2 its own, fraud v1 the model's, churn none
    "fraud": {"tp": 5.0, "fp": -1.5},
    "fraud:v2": {"tp": 100.0, "tn": 0.25, "fp": -3.0, "fn": -50.0},
}
CELL = {(1, 1): "tp", (0, 0): "tn", (1, 0): "fp", (0, 1): "fn"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    root = tmp_path_factory.mktemp("windows")
    costs = ("--costs", json.dumps(COSTS))
    with (
        serving(root / "data", *costs, log_path=root / "service.log") as service,
        httpx.Client(base_url=service.url, timeout=30.0) as http,
    ):
        yield http


@pytest.fixture(scope="module")
def sent(client: httpx.Client) -> list[Outcome]:
    sender = Sender(client, seed=4)
    for _ in range(3):
        sender.send(feedback=60, predictions=40)
    return sender.outcomes


def value(series: Series, outcomes: list[Outcome]) -> float | None:
    """The cost matrix's total, outcome by outcome."""
    costs = COSTS.get(f"{series[0]}:{series[1]}", COSTS.get(series[0]))
    if costs is None:
        return None
    return sum(costs.get(CELL[o.prediction, o.actual], 0.0) for o in outcomes)


def assert_answer(answer: dict[str, Any], series: Series, outcomes: list[Outcome]) -> None:
    """Counts, every metric with its interval, score metrics and value, as the oracles say."""
    pairs = [(o.prediction, o.actual) for o in outcomes]
    assert answer["n"] == len(outcomes)
    assert answer["counts"] == confusion(pairs)
    assert_window_metrics(answer["metrics"], pairs)
    assert_score_metrics(
        answer["scores"], [(o.score, o.actual) for o in outcomes if o.score is not None]
    )
    assert answer["value"] == pytest.approx(value(series, outcomes), abs=1e-9)


@pytest.mark.parametrize("view", list(TimeView))
@pytest.mark.parametrize(
    ("window", "resolution"), [("5m", MINUTE), ("1h", MINUTE), ("24h", MINUTE), ("7d", HOUR)]
)
def test_a_window_ending_now_matches_the_oracles(
    client: httpx.Client, sent: list[Outcome], view: TimeView, window: str, resolution: int
) -> None:
    for series in SERIES:
        before = time.time()
        answer = read(
            client, WINDOW, series[0], {"version": series[1], "window": window, "time": view}
        )
        after = time.time()
        assert (answer["model"], answer["version"], answer["time"]) == (*series, view)
        assert answer["resolution"] == resolution
        start, end = answer["start"], answer["end"]
        assert start % resolution == 0
        assert end % resolution == 0
        length = parse_duration(window)  # ending at the server's now, between before and after
        assert before - length - resolution < start <= after - length
        assert before <= end < after + resolution
        assert_answer(answer, series, within(sent, series, view, start, end))


def test_the_windows_are_not_trivial(sent: list[Outcome]) -> None:
    """The stream puts outcomes in and out of each window, so that each check means something."""
    now = time.time()
    for view in TimeView:
        ages = sorted(now - o.minute(view) for o in sent)
        assert ages[0] < 5 * MINUTE
    ages = [now - o.predicted for o in sent]
    assert any(HOUR < age < DAY for age in ages)
    assert any(2 * DAY < age < 7 * DAY for age in ages)
    assert any(o.score is None for o in sent)
    assert any(o.score in (0.0, 1.0) for o in sent)


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


@pytest.mark.parametrize("view", list(TimeView))
def test_a_window_between_start_and_end(
    client: httpx.Client, sent: list[Outcome], view: TimeView
) -> None:
    now = time.time()
    start, end = now - 20 * HOUR + 17, now - 2 * HOUR  # snapped outwards to whole minutes
    for series in SERIES:
        params = {"version": series[1], "time": view, "start": rfc3339(start), "end": str(end)}
        answer = read(client, WINDOW, series[0], params)
        assert answer["start"] == start // MINUTE * MINUTE
        assert answer["end"] == -(-end // MINUTE) * MINUTE
        assert_answer(answer, series, within(sent, series, view, answer["start"], answer["end"]))


def by_step(
    outcomes: list[Outcome], view: TimeView, start: int, step: int
) -> dict[int, list[Outcome]]:
    """The outcomes in each step from ``start`` on, by the step's start."""
    steps: dict[int, list[Outcome]] = {}
    for o in outcomes:
        steps.setdefault(start + (o.minute(view) - start) // step * step, []).append(o)
    return steps


@pytest.mark.parametrize("view", list(TimeView))
@pytest.mark.parametrize("step", ["10m", "3600", None])
def test_series_points_match_the_oracles(
    client: httpx.Client, sent: list[Outcome], view: TimeView, step: str | None
) -> None:
    start = time.time() - 30 * HOUR
    for series in SERIES:
        params = {"version": series[1], "time": view, "start": str(start)}
        answer = read(client, POINTS, series[0], params | ({} if step is None else {"step": step}))
        assert (answer["model"], answer["version"], answer["time"]) == (*series, view)
        every = answer["step"]
        if step is None:  # about 60 points
            assert every % MINUTE == 0
            assert (answer["end"] - answer["start"]) / every <= 61
        else:
            assert every == (int(step) if step.isdigit() else parse_duration(step))
        outcomes = within(sent, series, view, answer["start"], answer["end"])
        steps = by_step(outcomes, view, answer["start"], every)
        points = answer["points"]
        assert [point["start"] for point in points] == sorted(steps)  # no empty step
        for index, point in enumerate(points):
            pairs = [(o.prediction, o.actual) for o in steps[point["start"]]]
            assert point["n"] == len(pairs)
            assert point["counts"] == confusion(pairs)
            if index % max(len(points) // 8, 1) == 0:  # enough: sklearn is slow to call
                assert_window_metrics(point["metrics"], pairs)
