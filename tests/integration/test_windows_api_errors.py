"""The window and series API refuses what it cannot use: a 400 naming the parameter, or a 404
for a series it does not know, as documented, and nothing changes."""

import time
from collections.abc import Iterator

import httpx
import pytest

from feedback_monitor.windows import HOUR, parse_duration
from tests.integration.helpers import scrape, seed_samples, serving
from tests.integration.windows_stream import POINTS, WINDOW, read

pytestmark = pytest.mark.integration

KNOWN = {"version": "v1"}
# (endpoint, model, query parameters, the parameter the message must name)
BAD: list[tuple[str, str, dict[str, str], str]] = [
    (WINDOW, "fraud", {**KNOWN, "window": "5x"}, "window"),
    (WINDOW, "fraud", {**KNOWN, "window": "0m"}, "window"),
    (WINDOW, "fraud", {**KNOWN, "window": "-1h"}, "window"),
    (WINDOW, "fraud", {**KNOWN, "time": "later"}, "time"),
    (POINTS, "fraud", {**KNOWN, "time": "Arrival"}, "time"),
    (WINDOW, "fraud", {**KNOWN, "start": "2000", "end": "1000"}, "end"),
    (WINDOW, "fraud", {**KNOWN, "start": "1000", "end": "1000"}, "end"),
    (
        POINTS,
        "fraud",
        {**KNOWN, "start": "2024-01-02T00:00:00Z", "end": "2024-01-01T00:00:00Z"},
        "end",
    ),
    (WINDOW, "fraud", {**KNOWN, "start": "1000", "window": "1h"}, "window"),
    (WINDOW, "fraud", {**KNOWN, "start": "1000", "end": "9000", "window": "1h"}, "window"),
    (WINDOW, "fraud", {**KNOWN, "start": "yesterday"}, "start"),
    (WINDOW, "fraud", {**KNOWN, "start": "2024-01-01T00:00:00"}, "start"),  # no zone
    (WINDOW, "fraud", {**KNOWN, "end": "-5"}, "end"),
    (WINDOW, "fraud", {**KNOWN, "end": "nan"}, "end"),
    (WINDOW, "fraud", {**KNOWN, "step": "1m"}, "step"),  # a series' parameter, not a window's
    (POINTS, "fraud", {**KNOWN, "window": "5x"}, "window"),
    (POINTS, "fraud", {**KNOWN, "start": "1000", "window": "1h"}, "window"),
    (WINDOW, "fraud", {**KNOWN, "colour": "blue"}, "colour"),
    (WINDOW, "fraud", {"version": "v 1"}, "version"),
    (POINTS, "fraud", {"version": "v" * 65}, "version"),
    (WINDOW, "fr aud", KNOWN, "model"),
    (POINTS, "fraud", {**KNOWN, "step": "90s"}, "step"),  # not whole minutes
    (POINTS, "fraud", {**KNOWN, "step": "0"}, "step"),
    (POINTS, "fraud", {**KNOWN, "step": "often"}, "step"),
    (POINTS, "fraud", {**KNOWN, "step": "²"}, "step"),  # str.isdigit() takes it, int() does not
    (POINTS, "fraud", {**KNOWN, "start": "0", "step": "60"}, "step"),  # days only, that far back
    (POINTS, "fraud", {**KNOWN, "start": "0", "step": "1d"}, "step"),  # 11,000 points or more
    # Past what a time can be (year 9999), and what the store's 64-bit integers hold.
    (WINDOW, "fraud", {**KNOWN, "start": "1e19", "end": "2e19"}, "end"),
    (WINDOW, "fraud", {**KNOWN, "start": "1e19"}, "start"),
    (WINDOW, "fraud", {**KNOWN, "end": "1e308"}, "end"),
    (WINDOW, "fraud", {**KNOWN, "window": "100000000000000000w"}, "window"),
    (POINTS, "fraud", {**KNOWN, "step": "600000000000000000000000"}, "step"),
    (POINTS, "fraud", {**KNOWN, "step": "99999999999999w"}, "step"),
]
UNKNOWN = [
    (WINDOW, "nobody", {}),
    (POINTS, "nobody", {"version": "v1"}),
    (WINDOW, "fraud", {}),  # the model is known, with another version
    (POINTS, "fraud", {"version": "v2"}),
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    root = tmp_path_factory.mktemp("windows-errors")
    with (
        serving(root / "data", log_path=root / "service.log") as service,
        httpx.Client(base_url=service.url, timeout=30.0) as http,
    ):
        for actual in (0, 1, 1):
            body = {"prediction": 1, "actual": actual, "model": "fraud", "version": "v1"}
            assert http.post("/feedback", json=body).status_code == 200
        yield http


def state(client: httpx.Client) -> object:
    """Everything a read could have changed by mistake."""
    window = read(client, WINDOW, "fraud", {"version": "v1", "window": "7d"})
    return client.get("/api/v1/models").json(), seed_samples(scrape(client)), window["counts"]


@pytest.mark.parametrize(("path", "model", "params", "named"), BAD)
def test_a_bad_parameter_is_a_400_that_names_it(
    client: httpx.Client, path: str, model: str, params: dict[str, str], named: str
) -> None:
    before = state(client)
    answer = read(client, path, model, params, status=400)
    assert list(answer) == ["error"]
    where = "path" if named == "model" else "query"
    assert answer["error"].startswith(f"Invalid {where} parameter {named!r}: ")
    assert state(client) == before


@pytest.mark.parametrize(("path", "model", "params"), UNKNOWN)
def test_an_unknown_series_is_a_404(
    client: httpx.Client, path: str, model: str, params: dict[str, str]
) -> None:
    assert read(client, path, model, params, status=404) == {"error": "Unknown model or version"}


def test_a_window_reaching_back_past_1970_starts_there(client: httpx.Client) -> None:
    answer = read(client, WINDOW, "fraud", {**KNOWN, "window": "100000w"})  # about 1,900 years
    assert answer["start"] == 0
    assert answer["counts"] == {"tp": 2, "tn": 0, "fp": 1, "fn": 0}


@pytest.mark.parametrize("path", [WINDOW, POINTS])
def test_a_window_ending_now_is_as_long_as_asked(client: httpx.Client, path: str) -> None:
    answer = read(client, path, "fraud", {**KNOWN, "window": "7d"})
    assert 7 * 86400 <= answer["end"] - answer["start"] <= 7 * 86400 + 2 * 3600  # to the hour
    parts = [answer] if path == WINDOW else answer["points"]
    assert sum(sum(part["counts"].values()) for part in parts) == 3


@pytest.mark.parametrize("path", [WINDOW, POINTS])
def test_a_window_with_an_end_is_the_window_before_it(client: httpx.Client, path: str) -> None:
    """The three outcomes arrived a moment ago: a window ending just after holds them, one
    ending an hour ago holds none."""
    now = time.time()
    for window, end, outcomes in (("7d", now + 60, 3), ("1h", now - 3600, 0)):
        answer = read(client, path, "fraud", {**KNOWN, "window": window, "end": str(end)})
        length = parse_duration(window)
        assert end - length - HOUR < answer["start"] <= end - length < end <= answer["end"]
        parts = [answer] if path == WINDOW else answer["points"]
        assert sum(sum(part["counts"].values()) for part in parts) == outcomes


@pytest.mark.parametrize("path", [WINDOW, POINTS])
def test_the_defaults_answer(client: httpx.Client, path: str) -> None:
    """Nothing but the version: the last hour, by arrival; its three outcomes."""
    answer = read(client, path, "fraud", KNOWN)
    assert answer["time"] == "arrival"
    assert 3600 <= answer["end"] - answer["start"] <= 3660
    parts = [answer] if path == WINDOW else answer["points"]
    counts = {
        cell: sum(part["counts"][cell] for part in parts) for cell in ("tp", "tn", "fp", "fn")
    }
    assert counts == {"tp": 2, "tn": 0, "fp": 1, "fn": 0}
