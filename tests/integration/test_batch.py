"""POST /feedback/batch and /predictions/batch: all or nothing, the limits, the answer's
counts and per-series metrics, and one commit per batch."""

import random
from collections.abc import Iterator

import httpx
import pytest

from feedback_monitor.testing import ServiceProcess
from tests.integration.helpers import Samples, scrape, serving, total
from tests.integration.views import (
    Sent,
    Series,
    answer,
    assert_metrics_of,
    assert_predictions,
    assert_series_match,
    named,
    stored_state,
)

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json"}
SMALL_ITEMS = 5
SMALL_BYTES = 2048
DEFAULT_ITEMS = 10_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """Default settings; each test sends to series of its own."""
    root = tmp_path_factory.mktemp("batch")
    with serving(root / "data", log_path=root / "service.log") as started:
        yield started


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("small-batch")
    args = ("--max-batch-items", str(SMALL_ITEMS), "--max-batch-body-bytes", str(SMALL_BYTES))
    with serving(root / "data", *args, log_path=root / "service.log") as started:
        yield started


@pytest.fixture
def http(server: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60.0) as client:
        yield client


def fb(prediction: int, actual: int, series: Series, id_: str | None = None) -> dict[str, object]:
    item: dict[str, object] = {"prediction": prediction, "actual": actual, **named(series)}
    return item if id_ is None else {**item, "id": id_}


def refused(response: httpx.Response, status: int, index: int) -> str:
    """A batch refused with ``status`` because of item ``index``; the error message."""
    code, body = answer(response)
    assert (code, list(body), body["index"]) == (status, ["error", "index"], index), body
    assert isinstance(body["error"], str)
    return body["error"]


OLD: Series = ("batch-old", "1")
NEW: Series = ("batch-new", "1")
INVALID = {
    "bad value": ("/feedback/batch", {"prediction": 2, "actual": 1}, "Values must be 0 or 1"),
    "missing": ("/feedback/batch", {"prediction": 1, "id": "m"}, "Missing required fields"),
    "model": ("/feedback/batch", {"prediction": 1, "actual": 1, "model": "a b"}, "Invalid model"),
    "score": ("/feedback/batch", {"prediction": 1, "actual": 1, "score": 7}, "Invalid score"),
    "not an object": ("/feedback/batch", 5, ""),
    "no id": ("/predictions/batch", {"prediction": 1}, "Missing required fields"),
    "timestamp": (
        "/predictions/batch",
        {"id": "t", "prediction": 1, "timestamp": "x"},
        "Invalid timestamp",
    ),
}


@pytest.mark.parametrize("index", [0, 2, 4])
@pytest.mark.parametrize(("route", "bad", "error"), INVALID.values(), ids=INVALID.keys())
def test_one_invalid_item_refuses_the_whole_batch(
    http: httpx.Client, route: str, bad: object, error: str, index: int
) -> None:
    assert http.post("/feedback", json=fb(1, 1, OLD)).status_code == 200
    if route == "/feedback/batch":
        valid = [fb(1, 0, OLD), fb(0, 0, NEW), fb(1, 1, OLD, f"inv-{index}"), fb(0, 1, NEW)]
    else:
        valid = [{"id": f"inv-p{n}-{index}", "prediction": 1, **named(s)}
                 for n, s in enumerate((OLD, NEW, OLD, NEW))]  # fmt: skip
    items = [*valid[:index], bad, *valid[index:]]
    before = stored_state(http)
    assert refused(http.post(route, json={"items": items}), 400, index).startswith(error)
    assert stored_state(http) == before


def test_an_unknown_id_refuses_the_whole_batch(http: httpx.Client) -> None:
    series: Series = ("batch-404", "")
    assert http.post(
        "/predictions", json={"id": "u-p", "prediction": 1, **named(series)}
    ).is_success
    items = [fb(0, 0, series), fb(1, 1, series, "u-new"), {"id": "u-p", "actual": 0}]
    before = stored_state(http)
    unknown = http.post("/feedback/batch", json={"items": [*items, {"id": "u-404", "actual": 1}]})
    assert refused(unknown, 404, 3) == "Unknown prediction id"
    assert stored_state(http) == before
    # Nothing of the refused batch was kept, not even its ids: they count now, as new.
    status, body = answer(http.post("/feedback/batch", json={"items": items}))
    assert (status, body["accepted"], body["duplicates"]) == (200, 3, 0)
    assert_series_match(http, {series: [(0, 0), (1, 1), (1, 0)]})


def test_a_conflict_refuses_the_whole_batch(http: httpx.Client) -> None:
    series: Series = ("batch-409", "")
    assert http.post("/feedback", json=fb(1, 1, series, "c-1")).status_code == 200
    before = stored_state(http)
    with_stored = [fb(0, 0, series), fb(1, 0, series, "c-1")]
    conflict = refused(http.post("/feedback/batch", json={"items": with_stored}), 409, 1)
    assert conflict == "Conflicting feedback for id"
    within = [fb(1, 1, series, "c-2"), fb(0, 0, series), fb(1, 0, series, "c-2")]
    conflict = refused(http.post("/feedback/batch", json={"items": within}), 409, 2)
    assert conflict == "Conflicting feedback for id"
    predictions = [{"id": "c-3", "prediction": 1}, {"id": "c-3", "prediction": 0}]
    refused(http.post("/predictions/batch", json={"items": predictions}), 409, 1)
    assert stored_state(http) == before
    # The ids before the conflicting item were not kept: sent again alone, they count as new.
    for route, kept in (("/feedback/batch", within[:2]), ("/predictions/batch", predictions[:1])):
        status, body = answer(http.post(route, json={"items": kept}))
        assert (status // 100, body["accepted"], body["duplicates"]) == (2, len(kept), 0)


def test_a_valid_batch_answers_its_counts_and_the_metrics_of_every_series_it_touched(
    http: httpx.Client,
) -> None:
    a, b, c = ("batch-a", "1"), ("batch-b", "2"), ("batch-c", "")
    sent = Sent()
    assert http.post("/feedback", json=fb(1, 0, a, "v-dup")).status_code == 200
    sent[a].append((1, 0))
    joins = {"v-p1": 1, "v-p2": 0}
    for id_, prediction in joins.items():
        body = {"id": id_, "prediction": prediction, **named(c)}
        assert http.post("/predictions", json=body).status_code == 201
    rng = random.Random(7)
    items: list[dict[str, object]] = []
    for n in range(300):
        series, prediction, actual = rng.choice((a, b)), rng.randint(0, 1), rng.randint(0, 1)
        items.append(fb(prediction, actual, series, f"v-{n}" if n % 3 == 0 else None))
        sent[series].append((prediction, actual))
    items += [{"id": "v-p1", "actual": 1}, {"id": "v-p2", "actual": 1}]  # joins, into c
    sent[c] += [(1, 1), (0, 1)]
    items += [fb(1, 0, a, "v-dup"), items[0]]  # repeats: of a counted id, and within the batch
    status, answered = answer(http.post("/feedback/batch", json={"items": items}))
    assert (status, answered["success"]) == (200, True)
    assert (answered["accepted"], answered["duplicates"]) == (302, 2)
    metrics = {(m.pop("model"), m.pop("version")): m for m in answered["metrics"]}
    assert sorted(metrics) == sorted([a, b, c])
    for series, pairs in sent.items():
        assert_metrics_of(metrics[series], pairs)
    assert_series_match(http, sent)
    assert_predictions(http, c, stored=2, labelled=2, expired=0)


def test_a_prediction_batch_is_201(http: httpx.Client) -> None:
    d, e = ("batch-d", ""), ("batch-e", "3")
    assert http.post("/predictions", json={"id": "pb-0", "prediction": 0, **named(d)}).is_success
    items = [{"id": f"pb-{n}", "prediction": n % 2, **named(d if n < 3 else e)} for n in range(6)]
    assert answer(http.post("/predictions/batch", json={"items": items})) == (
        201,
        {"success": True, "accepted": 5, "duplicates": 1},  # pb-0 was stored already
    )
    assert_predictions(http, d, stored=3, labelled=0, expired=0)
    assert_predictions(http, e, stored=3, labelled=0, expired=0)


def commits(samples: Samples) -> tuple[float, float]:
    """The number of commits, and the records they committed."""
    name = "feedback_commit_batch_size"
    return total(samples, name + "_count"), total(samples, name + "_sum")


@pytest.mark.parametrize("route", ["/feedback/batch", "/predictions/batch"])
def test_a_batch_is_one_commit(http: httpx.Client, route: str) -> None:
    rng = random.Random(route)
    items: list[dict[str, object]] = []
    for n in range(2000):
        series = (f"commit-{n % 3}", "")
        if route == "/predictions/batch":
            items.append({"id": f"one-{n}", "prediction": n % 2, **named(series)})
        else:  # id-less and with ids, mixed
            id_ = f"one-f{n}" if n % 2 else None
            items.append(fb(rng.randint(0, 1), rng.randint(0, 1), series, id_))
    count, records = commits(scrape(http))
    status, body = answer(http.post(route, json={"items": items}))
    assert (status // 100, body["accepted"]) == (2, 2000)
    assert commits(scrape(http)) == (count + 1, records + 2000)


def test_the_default_item_limit_is_10000(http: httpx.Client) -> None:
    items = [fb(1, n % 2, ("limit-default", "")) for n in range(DEFAULT_ITEMS)]
    ok = http.post("/feedback/batch", json={"items": items})
    assert (ok.status_code, ok.json()["accepted"]) == (200, DEFAULT_ITEMS)
    before = stored_state(http)
    over = http.post("/feedback/batch", json={"items": [*items, items[0]]})
    assert (over.status_code, list(over.json())) == (413, ["error"])
    assert stored_state(http) == before


ROUTES = ["/feedback/batch", "/predictions/batch"]


def over_the_limit(route: str, count: int) -> list[dict[str, object]]:
    if route == "/feedback/batch":
        return [fb(1, 1, ("limit", "")) for _ in range(count)]
    return [{"id": f"limit-{n}", "prediction": 1, "model": "limit"} for n in range(count)]


@pytest.mark.parametrize("route", ROUTES)
def test_more_items_than_the_limit_is_413_and_stores_nothing(
    small: ServiceProcess, route: str
) -> None:
    with httpx.Client(base_url=small.url) as client:
        before = stored_state(client)
        refused = client.post(route, json={"items": over_the_limit(route, SMALL_ITEMS + 1)})
        assert (refused.status_code, list(refused.json())) == (413, ["error"])
        assert str(SMALL_ITEMS) in refused.json()["error"]
        assert stored_state(client) == before
        at_limit = client.post(route, json={"items": over_the_limit(route, SMALL_ITEMS)})
        assert at_limit.is_success, at_limit.text


@pytest.mark.parametrize("route", ROUTES)
def test_a_body_over_the_batch_byte_limit_is_413(small: ServiceProcess, route: str) -> None:
    items = b'{"items": [{"id": "%s", "prediction": 1, "actual": 1}]}' % route.encode()
    with httpx.Client(base_url=small.url) as client:
        before = stored_state(client)
        over = client.post(
            route, content=b" " * (SMALL_BYTES + 1 - len(items)) + items, headers=JSON
        )
        assert (over.status_code, list(over.json())) == (413, ["error"])
        assert stored_state(client) == before
        at = client.post(route, content=b" " * (SMALL_BYTES - len(items)) + items, headers=JSON)
        assert at.is_success, at.text


@pytest.mark.parametrize("route", [*ROUTES, "/predictions"])
def test_another_media_type_is_415(http: httpx.Client, route: str) -> None:
    body = b'{"items": [{"id": "media", "prediction": 1, "actual": 1}]}'
    if route == "/predictions":
        body = b'{"id": "media", "prediction": 1}'
    before = stored_state(http)
    response = http.post(route, content=body, headers={"content-type": "text/plain"})
    assert (response.status_code, list(response.json())) == (415, ["error"])
    assert stored_state(http) == before
