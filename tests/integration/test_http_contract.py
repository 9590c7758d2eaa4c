"""POST /feedback against the real server, exactly as issue 2 and the seed describe it."""

import gzip
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from feedback_monitor.testing import ServiceProcess
from tests.integration.helpers import (
    GAUGES,
    Samples,
    cell_counts,
    scrape,
    seed_samples,
    serving,
    total,
)
from tests.integration.views import sklearn_metrics

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json"}
MISSING = {"error": "Missing required fields"}
NOT_BINARY = {"error": "Values must be 0 or 1"}
SMALL_LIMIT = 4096


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One server for the rejection cases: none of them may change its counts."""
    root = tmp_path_factory.mktemp("contract")
    with serving(root / "data", log_path=root / "service.log") as started:
        with httpx.Client(base_url=started.url, timeout=10.0) as http:
            # Some feedback first, so "unchanged" is checked against non-zero counts and gauges.
            for prediction, actual in ((1, 1), (0, 0), (1, 0), (0, 1), (1, 1)):
                ok = http.post("/feedback", json={"prediction": prediction, "actual": actual})
                assert ok.status_code == 200
        yield started


@pytest.fixture
def http(shared: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared.url, timeout=30.0) as client:
        yield client


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("small")
    args = ("--max-body-bytes", str(SMALL_LIMIT))
    with serving(root / "data", *args, log_path=root / "service.log") as started:
        yield started


def assert_rejected(
    http: httpx.Client,
    before: Samples,
    response: httpx.Response,
    status: int,
    route: str = "/feedback",
) -> dict[str, object]:
    """A JSON error with ``status``; the counts unchanged; the rejection counted on /metrics."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, dict)
    assert list(body) == ["error"]
    assert isinstance(body["error"], str)
    assert body["error"]
    after = scrape(http)
    assert seed_samples(after) == seed_samples(before), "a rejected request changed the counts"
    labels = {"route": route, "outcome": "invalid", "status": str(status)}
    assert total(after, "feedback_http_requests_total", **labels) == (
        total(before, "feedback_http_requests_total", **labels) + 1
    )
    return body


def assert_validation_error_counted(before: Samples, after: Samples) -> None:
    """Exactly one reason of feedback_validation_errors_total moved, by exactly one."""
    name = "feedback_validation_errors_total"
    moved = {
        key: value - before.get(key, 0.0)
        for key, value in after.items()
        if key[0] == name and value != before.get(key, 0.0)
    }
    assert list(moved.values()) == [1.0], moved


def post_rejected(
    http: httpx.Client, content: bytes, status: int, headers: dict[str, str] = JSON
) -> dict[str, object]:
    before = scrape(http)
    response = http.post("/feedback", content=content, headers=headers)
    body = assert_rejected(http, before, response, status)
    assert_validation_error_counted(before, scrape(http))
    return body


def test_every_answer_matches_sklearn_over_everything_sent(client: httpx.Client) -> None:
    rng = random.Random(2)
    # All negatives first, so precision, recall and F1 start with zero denominators.
    pairs = [(0, 0), (0, 0), (0, 1), (1, 0), (1, 1)]
    pairs += [(rng.randint(0, 1), rng.randint(0, 1)) for _ in range(45)]
    sent: list[tuple[int, int]] = []
    for prediction, actual in pairs:
        response = client.post(
            "/feedback", json={"prediction": prediction, "actual": actual, "comment": "ignored"}
        )
        sent.append((prediction, actual))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        body = response.json()
        assert list(body) == ["success", "metrics"]
        assert body["success"] is True
        metrics = body["metrics"]
        assert sorted(metrics) == sorted(GAUGES)
        assert all(type(value) is float for value in metrics.values()), metrics
        assert metrics == pytest.approx(sklearn_metrics(sent), rel=1e-12, abs=0.0)
    expected = {
        "tp": sent.count((1, 1)),
        "tn": sent.count((0, 0)),
        "fp": sent.count((1, 0)),
        "fn": sent.count((0, 1)),
    }
    assert cell_counts(scrape(client)) == expected


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "application/json;charset=UTF-8", "Application/JSON",
     'application/json; charset="utf-8"', "application/json; v=1"],
)  # fmt: skip
def test_json_media_type_with_parameters_is_accepted(http: httpx.Client, content_type: str) -> None:
    response = http.post(
        "/feedback",
        content=b'{"prediction": 1, "actual": 0}',
        headers={"content-type": content_type},
    )
    assert response.status_code == 200, response.text
    assert response.json()["success"] is True


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"prediction": 1}',
        b'{"actual": 0}',
        b'{"prediction": null, "actual": 1}',
        b'{"prediction": 0, "actual": null}',
        b'{"prediction": null, "actual": null}',
        b'{"predictions": 1, "actuals": 1}',
    ],
)
def test_missing_or_null_fields(http: httpx.Client, body: bytes) -> None:
    assert post_rejected(http, body, 400) == MISSING


INVALID = ["2", "-1", "1.5", "1.0", "true", "false", '"1"', "[1]", "{}", '"0"', "0.0", "1e0", "10"]


@pytest.mark.parametrize("value", INVALID)
@pytest.mark.parametrize("field", ["prediction", "actual"])
def test_values_other_than_integer_0_or_1(http: httpx.Client, field: str, value: str) -> None:
    other = "actual" if field == "prediction" else "prediction"
    body = f'{{"{field}": {value}, "{other}": 1}}'.encode()
    assert post_rejected(http, body, 400) == NOT_BINARY


NOT_AN_OBJECT = {
    "malformed": b'{"prediction": 1, "actual": }',
    "unterminated": b'{"prediction": 1, "actual": 1',
    "array": b"[1, 1]",
    "object in array": b'[{"prediction": 1, "actual": 1}]',
    "string": b'"prediction"',
    "number": b"1",
    "null": b"null",
    "true": b"true",
    "empty": b"",
    "whitespace": b" \n ",
    "invalid utf-8": b'{"prediction": 1, "actual": 1, "note": "\xff\xfe"}',
    "NaN": b'{"prediction": NaN, "actual": 1}',
    "Infinity": b'{"prediction": Infinity, "actual": 1}',
    "-Infinity": b'{"prediction": 1, "actual": -Infinity}',
    "bare NaN": b"NaN",
    "trailing garbage": b'{"prediction": 1, "actual": 1} garbage',
    "two objects": b'{"prediction": 1, "actual": 1}{"prediction": 1, "actual": 1}',
    "deep arrays": b"[" * 100_000 + b"]" * 100_000,
    "deep objects": b'{"a": ' * 50_000 + b"1" + b"}" * 50_000,
    "deep beside valid fields": (
        b'{"prediction": 1, "actual": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    ),
}


@pytest.mark.parametrize("body", NOT_AN_OBJECT.values(), ids=NOT_AN_OBJECT.keys())
def test_body_that_is_not_a_json_object(http: httpx.Client, body: bytes) -> None:
    error = post_rejected(http, body, 400)
    assert error not in (MISSING, NOT_BINARY)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"content-type": "text/plain"},
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "application/jsonx"},
        {"content-type": "application/json-patch+json"},
        {"content-type": "multipart/form-data; boundary=x"},
        {"content-type": "application/json; charset=utf-16"},
        {"content-type": "application/json; charset=latin-1"},
    ],
    ids=["none", "text", "form", "jsonx", "json-patch", "multipart", "utf-16", "latin-1"],
)
def test_other_media_types_are_415(http: httpx.Client, headers: dict[str, str]) -> None:
    post_rejected(http, b'{"prediction": 1, "actual": 1}', 415, headers)


@pytest.mark.parametrize("coding", ["gzip", "br", "deflate"])
@pytest.mark.parametrize("route", ["/feedback", "/feedback/batch"])
def test_a_compressed_body_is_415(http: httpx.Client, coding: str, route: str) -> None:
    """A body in a content coding the service does not decode; identity is no coding at all."""
    body = gzip.compress(b'{"prediction": 1, "actual": 1}')
    headers = {**JSON, "content-encoding": coding}
    response = http.post(route, content=body, headers=headers)
    assert response.status_code == 415
    assert response.json()["error"].startswith("Content-Encoding is not supported")
    plain = http.post(
        "/feedback", json={"prediction": 1, "actual": 1}, headers={"content-encoding": "identity"}
    )
    assert plain.status_code == 200


def padded(size: int) -> bytes:
    """A valid feedback body of exactly ``size`` bytes (leading whitespace is valid JSON)."""
    body = b'{"prediction": 1, "actual": 1}'
    return b" " * (size - len(body)) + body


def test_body_at_the_default_limit_is_accepted_one_byte_more_is_413(http: httpx.Client) -> None:
    limit = 1024 * 1024
    assert http.post("/feedback", content=padded(limit), headers=JSON).status_code == 200
    post_rejected(http, padded(limit + 1), 413)
    post_rejected(http, padded(8 * limit), 413)


def test_configured_limit(small: ServiceProcess) -> None:
    with httpx.Client(base_url=small.url, timeout=30.0) as http:
        ok = http.post("/feedback", content=padded(SMALL_LIMIT), headers=JSON)
        assert ok.status_code == 200, ok.text
        post_rejected(http, padded(SMALL_LIMIT + 1), 413)


def chunks(body: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("limit", [SMALL_LIMIT, 1024 * 1024], ids=["configured", "default"])
def test_chunked_body_without_content_length(
    shared: ServiceProcess, small: ServiceProcess, limit: int
) -> None:
    service = small if limit == SMALL_LIMIT else shared
    with httpx.Client(base_url=service.url, timeout=30.0) as http:
        ok = http.post("/feedback", content=chunks(padded(limit)), headers=JSON)
        assert "content-length" not in ok.request.headers
        assert ok.status_code == 200, ok.text
        before = scrape(http)
        response = http.post("/feedback", content=chunks(padded(limit + 1)), headers=JSON)
        assert response.request.headers["transfer-encoding"] == "chunked"
        assert_rejected(http, before, response, 413)
        assert_validation_error_counted(before, scrape(http))


@pytest.mark.parametrize(
    ("method", "path", "status", "route"),
    [
        ("GET", "/nope", 404, "other"),
        ("POST", "/nope", 404, "other"),
        ("POST", "/feedbacks", 404, "other"),
        ("GET", "/feedback", 405, "/feedback"),
        ("PUT", "/feedback", 405, "/feedback"),
        ("DELETE", "/feedback", 405, "/feedback"),
        ("POST", "/metrics", 405, "/metrics"),
        ("GET", "/feedback/batch", 405, "/feedback/batch"),
        ("GET", "/predictions", 405, "/predictions"),
        ("PUT", "/predictions/batch", 405, "/predictions/batch"),
        ("POST", "/api/v1/models", 405, "/api/v1/models"),
        ("GET", "/api/v1/models/", 404, "other"),
        ("GET", "/api/v1/model", 404, "other"),
    ],
)
def test_unknown_route_and_method_as_json(
    http: httpx.Client, method: str, path: str, status: int, route: str
) -> None:
    before = scrape(http)
    response = http.request(method, path, json={"prediction": 1, "actual": 1})
    assert_rejected(http, before, response, status, route)
    reason = {404: "not_found", 405: "method_not_allowed"}[status]
    name = "feedback_validation_errors_total"
    assert total(scrape(http), name, reason=reason) == total(before, name, reason=reason) + 1


def test_rejections_change_nothing_across_a_restart(tmp_path: Path) -> None:
    """Only the acknowledged feedback is in the store: the rejected never reached it."""
    data, log = tmp_path / "data", tmp_path / "service.log"
    with serving(data, log_path=log) as service, httpx.Client(base_url=service.url) as http:
        assert http.post("/feedback", json={"prediction": 0, "actual": 1}).status_code == 200
        for body in (b'{"prediction": 1}', b'{"prediction": 2, "actual": 1}', b"[]", b"{"):
            assert http.post("/feedback", content=body, headers=JSON).status_code == 400
        assert http.post("/feedback", content=b"{}", headers={}).status_code == 415
    with serving(data, log_path=log) as service, httpx.Client(base_url=service.url) as http:
        assert cell_counts(scrape(http)) == {"tp": 0, "tn": 0, "fp": 0, "fn": 1}
