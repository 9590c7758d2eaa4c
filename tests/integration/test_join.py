"""Predictions first, ground truth later: the join by id (across a restart), what becomes of the
stored predictions on /metrics and in /api/v1/models, the label delay, and expiry."""

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.integration.helpers import scrape, serving, stop, wait_until
from tests.integration.views import (
    Series,
    answer,
    assert_metrics_of,
    assert_predictions,
    assert_series_match,
    delay_histogram,
    labels,
    named,
    series_on,
    stored_state,
)

pytestmark = pytest.mark.integration

FRAUD: Series = ("fraud", "7")
UNKNOWN = {"error": "Unknown prediction id"}
CREATED = (201, {"success": True})
DAY = 86400.0


def predict(
    client: httpx.Client, id_: str, prediction: int, series: Series, **extra: object
) -> None:
    body = {"id": id_, "prediction": prediction, **named(series), **extra}
    assert answer(client.post("/predictions", json=body)) == CREATED


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


@pytest.mark.parametrize("how", ["terminate", "kill"])
def test_feedback_joins_a_prediction_stored_before_a_restart(tmp_path: Path, how: str) -> None:
    data, log = tmp_path / "data", tmp_path / "service.log"
    with serving(data, log_path=log) as service, httpx.Client(base_url=service.url) as client:
        predict(client, "p-1", 1, FRAUD, score=0.9)
        predict(client, "p-2", 0, FRAUD)
        stop(service, how)
    with serving(data, log_path=log) as service, httpx.Client(base_url=service.url) as client:
        assert_predictions(client, FRAUD, stored=2, labelled=0, expired=0)
        first = client.post("/feedback", json={"id": "p-1", "actual": 1})
        assert first.status_code == 200, first.text
        assert list(first.json()) == ["success", "metrics"]
        assert_metrics_of(first.json()["metrics"], [(1, 1)])
        second = client.post("/feedback", json={"id": "p-2", "actual": 1})
        assert second.status_code == 200, second.text
        assert_metrics_of(second.json()["metrics"], [(1, 1), (0, 1)])
        assert_series_match(client, {FRAUD: [(1, 1), (0, 1)]})
        assert series_on(scrape(client)) == {FRAUD}  # nothing counted under the default series
        assert_predictions(client, FRAUD, stored=2, labelled=2, expired=0)


def test_pending_labelled_coverage_and_the_label_delay_histogram(client: httpx.Client) -> None:
    series: Series = ("churn", "2024.1")
    now = time.time()
    predict(client, "d-1", 1, series, timestamp=now - 100)  # Unix seconds
    predict(client, "d-2", 1, series, timestamp=rfc3339(now - 7200))  # RFC 3339
    predict(client, "d-3", 0, series, timestamp=now - 8 * DAY)
    predict(client, "d-4", 0, series)  # never labelled
    assert_predictions(client, series, stored=4, labelled=0, expired=0)
    for id_, actual in (("d-1", 1), ("d-2", 0), ("d-3", 0)):
        assert client.post("/feedback", json={"id": id_, "actual": actual}).status_code == 200
    elapsed = time.time() - now
    assert_predictions(client, series, stored=4, labelled=3, expired=0)
    assert_series_match(client, {series: [(1, 1), (1, 0), (0, 0)]})
    histogram = delay_histogram(scrape(client), series)
    least = 100 + 7200 + 8 * DAY
    assert histogram.pop("sum") == pytest.approx(least + 1.5 * elapsed, abs=1.5 * elapsed)
    assert histogram == {
        **{le: 0 for le in ("1.0", "10.0", "60.0")},
        **{le: 1 for le in ("300.0", "900.0", "3600.0")},  # d-1: 100 s
        **{le: 2 for le in ("21600.0", "86400.0", "604800.0")},  # d-2: 2 h
        **{le: 3 for le in ("2592000.0", "7776000.0", "+Inf")},  # d-3: 8 days
        "count": 3,
    }


def test_unknown_id_is_404_and_changes_nothing(client: httpx.Client) -> None:
    predict(client, "known", 1, FRAUD)
    before = stored_state(client)
    for body in (
        {"id": "unknown", "actual": 1},
        {"id": "unknown", "actual": 0, **named(FRAUD)},
    ):
        assert answer(client.post("/feedback", json=body)) == (404, UNKNOWN)
    assert stored_state(client) == before


def test_a_contradicting_prediction_is_409_and_changes_nothing(client: httpx.Client) -> None:
    predict(client, "c-1", 1, FRAUD)
    before = stored_state(client)
    status, body = answer(
        client.post("/feedback", json={"id": "c-1", "prediction": 0, "actual": 1})
    )
    assert status == 409
    assert list(body) == ["error"]
    assert body["error"]
    assert stored_state(client) == before
    agreeing = client.post("/feedback", json={"id": "c-1", "prediction": 1, "actual": 0})
    assert agreeing.status_code == 200, agreeing.text
    assert_series_match(client, {FRAUD: [(1, 0)]})
    assert_predictions(client, FRAUD, stored=1, labelled=1, expired=0)


def expired(client: httpx.Client, series: Series) -> float:
    return scrape(client).get(("feedback_expired_predictions_total", labels(series)), 0.0)


@pytest.mark.parametrize(
    "ttl",
    [pytest.param("3", id="seconds"), pytest.param("PT3S", id="iso8601")],
)
def test_unlabelled_predictions_expire_after_the_ttl(tmp_path: Path, ttl: str) -> None:
    waiting, answered = ("expiring", "1"), ("answered", "1")
    args = ("--prediction-ttl", ttl)
    with (
        serving(tmp_path / "data", *args, log_path=tmp_path / "service.log") as service,
        httpx.Client(base_url=service.url) as client,
    ):
        items = [{"id": f"lost-{n}", "prediction": n % 2, **named(waiting)} for n in range(3)]
        items += [
            {"id": "kept", "prediction": 1, **named(waiting)},
            {"id": "other", "prediction": 0, **named(answered)},
        ]
        assert answer(client.post("/predictions/batch", json={"items": items}))[0] == 201
        for id_ in ("kept", "other"):  # labelled well within the TTL
            assert client.post("/feedback", json={"id": id_, "actual": 1}).status_code == 200
        assert_predictions(client, waiting, stored=4, labelled=1, expired=0)
        wait_until(lambda: expired(client, waiting) >= 3, what="expiry", every=0.1)
        assert_predictions(client, waiting, stored=4, labelled=1, expired=3)
        assert_predictions(client, answered, stored=1, labelled=1, expired=0)
        assert_series_match(client, {waiting: [(1, 1)], answered: [(0, 1)]})
        # An expired prediction is gone: its late label finds nothing to join.
        assert answer(client.post("/feedback", json={"id": "lost-0", "actual": 0})) == (
            404,
            UNKNOWN,
        )
