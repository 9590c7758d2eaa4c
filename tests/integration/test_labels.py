"""Model and version on POST /feedback: labels on every seed metric, metrics per series, and
every malformed optional field refused with a 400 that names it."""

import json
import random
import re
from collections.abc import Iterator

import httpx
import pytest

from feedback_monitor.testing import ServiceProcess
from tests.integration.helpers import CELLS, COUNTERS, SEED_METRICS, feedback, scrape, serving
from tests.integration.views import (
    DEFAULT,
    Sent,
    Series,
    answer,
    assert_metrics_of,
    assert_series_match,
    counters,
    models,
    series_on,
    stored_state,
)

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json"}
MISSING = {"error": "Missing required fields"}
NOT_BINARY = {"error": "Values must be 0 or 1"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One server for the module; each test sends to series of its own."""
    root = tmp_path_factory.mktemp("labels")
    with serving(root / "data", log_path=root / "service.log") as started:
        yield started


@pytest.fixture
def http(server: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        yield client


def test_every_seed_metric_carries_model_and_version(http: httpx.Client) -> None:
    sent: list[tuple[dict[str, str], Series]] = [
        ({}, DEFAULT),
        ({"model": "carry", "version": "1"}, ("carry", "1")),
        ({"model": "carry", "version": "2"}, ("carry", "2")),
        ({"model": "carry-only"}, ("carry-only", "")),
        ({"version": "v9"}, ("default", "v9")),
    ]
    for fields, _ in sent:
        response = http.post("/feedback", json={**feedback("tp"), **fields})
        assert response.status_code == 200, response.text
    samples = scrape(http)
    for name in SEED_METRICS:
        label_names = {tuple(dict(pairs)) for sample, pairs in samples if sample == name}
        assert label_names == {("model", "version")}, name
        assert series_on(samples, [name]) >= {series for _, series in sent}, name
    for _, series in sent:  # each feedback counted in its own series, as a true positive
        assert counters(samples, series) == {"tp": 1, "tn": 0, "fp": 0, "fn": 0}, series


def test_each_answer_has_the_metrics_of_its_own_series(http: httpx.Client) -> None:
    # Each series right a different share of the time, so that mixing them up shows.
    right = {
        ("own-a", "1.0"): 0.9,
        ("own-a", "2.0"): 0.5,
        ("own-b", ""): 0.2,
        ("default", "own"): 0.7,
    }
    rng = random.Random(3)
    sent = Sent()
    for _ in range(160):
        series = rng.choice(list(right))
        prediction = rng.randint(0, 1)
        actual = prediction if rng.random() < right[series] else 1 - prediction
        body: dict[str, object] = {"prediction": prediction, "actual": actual}
        if series[0] != "default":  # else left out: the defaults name the series
            body["model"] = series[0]
        if series[1]:
            body["version"] = series[1]
        response = http.post("/feedback", json=body)
        assert response.status_code == 200, response.text
        sent[series].append((prediction, actual))
        assert_metrics_of(response.json()["metrics"], sent[series])
    assert_series_match(http, sent)


@pytest.mark.parametrize("cell", CELLS)
def test_a_new_series_shows_all_four_counters_from_its_first_feedback(
    http: httpx.Client, cell: str
) -> None:
    series = (f"first-{cell}", "v1")
    assert series not in series_on(scrape(http))
    body = {**feedback(cell), "model": series[0], "version": series[1]}
    assert http.post("/feedback", json=body).status_code == 200
    expected = {other: int(other == cell) for other in COUNTERS}
    assert counters(scrape(http), series) == expected
    assert models(http)[series]["counts"] == expected


# (field, JSON text of a bad value); each is sent with valid prediction and actual.
MALFORMED = [
    ("model", '""'),
    ("model", '"has space"'),
    ("model", '"a/b"'),
    ("model", '"' + "m" * 65 + '"'),
    ("model", '"modèle"'),
    ("model", "7"),
    ("model", "true"),
    ("model", "null"),
    ("model", '["a"]'),
    ("version", '"1 0"'),
    ("version", '"' + "v" * 65 + '"'),
    ("version", "1"),
    ("version", '{"major": 1}'),
    ("version", '"v\\n1"'),
    ("id", '""'),
    ("id", '"' + "i" * 129 + '"'),
    ("id", "42"),
    ("id", "true"),
    ("id", '["x"]'),
    ("score", "-0.01"),
    ("score", "1.01"),
    ("score", "2"),
    ("score", '"0.5"'),
    ("score", "true"),
    ("score", "[0.5]"),
    ("timestamp", "-1"),
    ("timestamp", '"yesterday"'),
    ("timestamp", '"2024-01-01T00:00:00"'),  # no time zone
    ("timestamp", '"2024-13-01T00:00:00Z"'),
    ("timestamp", '"1700000000"'),
    ("timestamp", "true"),
    ("timestamp", "[1700000000]"),
]
BASES: dict[str, dict[str, object]] = {
    "/feedback": {"prediction": 1, "actual": 1},
    "/predictions": {"id": "malformed-base", "prediction": 1},
}


@pytest.mark.parametrize("route", BASES)
@pytest.mark.parametrize(("field", "value"), MALFORMED)
def test_a_malformed_optional_field_is_a_400_naming_it_and_changes_nothing(
    http: httpx.Client, route: str, field: str, value: str
) -> None:
    fields = {**BASES[route], field: "placeholder"}
    body = json.dumps(fields).replace('"placeholder"', value).encode()
    before = stored_state(http)
    status, refused = answer(http.post(route, content=body, headers=JSON))
    assert (status, list(refused)) == (400, ["error"]), refused
    assert re.search(rf"\b{field}\b", refused["error"]), refused
    assert stored_state(http) == before


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"prediction": 1, "model": "m", "version": "1", "id": "x"}, MISSING),
        ({"actual": 1, "score": 0.5, "timestamp": 1700000000}, MISSING),
        ({"id": "seed-x", "prediction": 1}, MISSING),
        ({"prediction": 2, "actual": 1, "model": "m"}, NOT_BINARY),
        ({"prediction": 1, "actual": True, "id": "seed-y"}, NOT_BINARY),
        ({"id": "seed-z", "actual": 2}, NOT_BINARY),
    ],
)
def test_seed_messages_stand_beside_optional_fields(
    http: httpx.Client, body: dict[str, object], error: dict[str, str]
) -> None:
    before = stored_state(http)
    assert answer(http.post("/feedback", json=body)) == (400, error)
    assert stored_state(http) == before


VALID = [
    ("score", 0),
    ("score", 1),
    ("score", 0.25),
    ("timestamp", "2024-01-01T00:00:00Z"),
    ("timestamp", "2024-01-01T08:30:00.123+02:00"),
    ("timestamp", 1700000000),
    ("timestamp", 1700000000.5),
    ("id", "i" * 128),
    ("id", "ü 🙂 any text"),
    ("model", "Az09_.:-" * 8),  # every allowed character, 64 of them
    ("version", "v" * 64),
    ("version", ""),
]


@pytest.mark.parametrize(("field", "value"), VALID)
def test_valid_optional_fields_are_accepted(http: httpx.Client, field: str, value: object) -> None:
    fields = {"model": f"valid-{VALID.index((field, value))}", field: value}
    series = (str(fields["model"]), str(fields.get("version", "")))
    response = http.post("/feedback", json={**feedback("fn"), **fields})
    assert response.status_code == 200, response.text
    assert counters(scrape(http), series) == {"tp": 0, "tn": 0, "fp": 0, "fn": 1}


@pytest.mark.parametrize("field", ["model", "version"])
def test_a_name_with_a_trailing_newline_is_refused(client: httpx.Client, field: str) -> None:
    """On a server of its own: were it accepted, it would break every later scrape."""
    response = client.post("/feedback", json={**feedback("tp"), field: "abc\n"})
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]
    scrape(client)  # the exposition still parses
