"""The cap on (model, version) series: 10,000 distinct model names against a cap of 50, the
default cap of 1000, and the cap across a restart. Past the cap: a clear 4xx, nothing stored,
no new series on /metrics, and no memory spent on the names refused."""

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from feedback_monitor.testing import ServiceProcess
from tests.integration.helpers import RawHTTP, scrape, serving
from tests.integration.views import (
    Series,
    answer,
    models,
    series_on,
    series_state,
    stored_state,
    tree_rss_bytes,
)

pytestmark = pytest.mark.integration

CAP = 50
TRIES = 10_000
ROUNDS = 10  # /metrics is checked after each
CONNECTIONS = 8
MEMORY_BOUND = 50 * 1024 * 1024
DEFAULT_CAP = 1000


def attempt(n: int) -> tuple[str, dict[str, object]]:
    """The n-th try of a new name: every fourth a prediction, the others feedback."""
    if n % 4 == 0:
        return "/predictions", {"id": f"try-{n}", "prediction": 1, "model": f"name-{n}"}
    return "/feedback", {"prediction": n % 2, "actual": 1, "model": f"name-{n}"}


async def try_all(url: str, numbers: range) -> list[tuple[int, int, Any]]:
    """Every attempt in ``numbers``, over concurrent connections: (n, status, body)."""
    answers: list[tuple[int, int, Any]] = []

    async def run(mine: range) -> None:
        http = await RawHTTP.connect(url)
        try:
            for n in mine:
                path, body = attempt(n)
                status, got = await http.post_json(path, json.dumps(body).encode())
                answers.append((n, status, json.loads(got)))
        finally:
            await http.close()

    await asyncio.gather(*(run(numbers[k::CONNECTIONS]) for k in range(CONNECTIONS)))
    return answers


def all_series(client: httpx.Client) -> set[Series]:
    """Every series on /metrics, in any family the service exports per series."""
    state = series_state(scrape(client))
    return series_on(state, names={name for name, _ in state})


def assert_refused_for_the_cap(status: int, body: Any, cap: int) -> None:
    assert status == 422, body
    assert list(body) == ["error"] or list(body) == ["error", "index"], body
    assert "series" in body["error"].lower(), body
    assert str(cap) in body["error"], body


def send(client: httpx.Client, model: str, version: str = "") -> httpx.Response:
    return client.post(
        "/feedback", json={"prediction": 1, "actual": 1, "model": model, "version": version}
    )


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("capped")
    args = ("--max-series", str(CAP))
    with serving(root / "data", *args, log_path=root / "service.log") as started:
        yield started


def test_ten_thousand_names_stop_at_the_cap(capped: ServiceProcess) -> None:
    answers: list[tuple[int, int, Any]] = []
    with httpx.Client(base_url=capped.url, timeout=30.0) as client:
        before = tree_rss_bytes(capped.pid)
        per_round = TRIES // ROUNDS
        for start in range(0, TRIES, per_round):
            answers += asyncio.run(try_all(capped.url, range(start, start + per_round)))
            assert len(all_series(client)) <= CAP  # the exposition never grows past it
        grown = tree_rss_bytes(capped.pid) - before
        accepted = {f"name-{n}" for n, status, _ in answers if status in (200, 201)}
        assert len(accepted) == CAP
        for _, status, body in answers:
            if status not in (200, 201):
                assert_refused_for_the_cap(status, body, CAP)
        assert all_series(client) == {(name, "") for name in accepted}
        assert set(models(client)) == {(name, "") for name in accepted}
        assert grown < MEMORY_BOUND, f"the server grew by {grown / 2**20:.1f} MiB"
        # A refused prediction was not stored: its label finds nothing to join.
        lost = next(n for n, status, _ in answers if status == 422 and n % 4 == 0)
        joining = client.post("/feedback", json={"id": f"try-{lost}", "actual": 1})
        assert answer(joining) == (404, {"error": "Unknown prediction id"})
        # At the cap, the series kept still take feedback.
        assert send(client, next(iter(accepted))).status_code == 200


def distinct(count: int, prefix: str) -> list[dict[str, object]]:
    return [{"prediction": 1, "actual": n % 2, "model": f"{prefix}-{n}"} for n in range(count)]


def test_the_default_cap_is_1000(client: httpx.Client) -> None:
    """Verified in batches: 1001 new series in one batch are refused whole, 1000 accepted, and
    then one more new series is refused, by a single feedback and in a prediction batch."""
    over = client.post("/feedback/batch", json={"items": distinct(DEFAULT_CAP + 1, "d")})
    assert_refused_for_the_cap(*answer(over), DEFAULT_CAP)
    assert models(client) == {}
    full = client.post("/feedback/batch", json={"items": distinct(DEFAULT_CAP, "d")})
    assert full.status_code == 200, full.text
    assert full.json()["accepted"] == DEFAULT_CAP
    assert len(models(client)) == DEFAULT_CAP
    before = stored_state(client)
    one_more = {"prediction": 1, "actual": 1, "model": "d-one-more"}
    assert_refused_for_the_cap(*answer(client.post("/feedback", json=one_more)), DEFAULT_CAP)
    predictions = {"items": [{"id": "p", "prediction": 1, "model": "d-one-more"}]}
    refused = client.post("/predictions/batch", json=predictions)
    assert_refused_for_the_cap(*answer(refused), DEFAULT_CAP)
    assert stored_state(client) == before
    assert len(all_series(client)) == DEFAULT_CAP


def test_the_cap_counts_versions_and_holds_across_a_restart(tmp_path: Path) -> None:
    data, log, args = tmp_path / "data", tmp_path / "service.log", ("--max-series", "3")
    with serving(data, *args, log_path=log) as service, httpx.Client(base_url=service.url) as c:
        for version in ("1", "2", "3"):
            assert send(c, "a", version).status_code == 200
        assert_refused_for_the_cap(*answer(send(c, "a", "4")), 3)
    with serving(data, *args, log_path=log) as service, httpx.Client(base_url=service.url) as c:
        assert_refused_for_the_cap(*answer(send(c, "b")), 3)
        assert send(c, "a", "2").status_code == 200
        assert all_series(c) == {("a", "1"), ("a", "2"), ("a", "3")}


def refused_new_series_by_unknown_id(client: httpx.Client) -> None:
    for ghost in ("ghost-1", "ghost-2"):
        batch = [{"prediction": 1, "actual": 1, "model": ghost}, {"id": "nope", "actual": 1}]
        assert answer(client.post("/feedback/batch", json={"items": batch}))[0] == 404


def refused_new_series_by_conflict(client: httpx.Client) -> None:
    assert client.post("/feedback", json={"id": "k", "prediction": 1, "actual": 1}).is_success
    conflicting = {"id": "k", "prediction": 1, "actual": 0, "model": "ghost"}
    assert answer(client.post("/feedback", json=conflicting))[0] == 409


@pytest.mark.parametrize(
    "refuse",
    [refused_new_series_by_unknown_id, refused_new_series_by_conflict],
    ids=["404", "409"],
)
def test_refused_requests_do_not_use_up_the_cap(
    tmp_path: Path, refuse: Callable[[httpx.Client], None]
) -> None:
    """A request the store refuses whole creates no series, so it takes no place under the cap."""
    args = ("--max-series", "2")
    with (
        serving(tmp_path / "data", *args, log_path=tmp_path / "service.log") as service,
        httpx.Client(base_url=service.url) as client,
    ):
        refuse(client)
        stored = set(models(client))
        assert len(stored) < 2
        real = client.post("/feedback", json={"prediction": 1, "actual": 1, "model": "real"})
        assert real.status_code == 200, (stored, real.text)


def test_a_feedback_batch_refused_at_the_cap_names_the_item(tmp_path: Path) -> None:
    with (
        serving(tmp_path / "data", "--max-series", "1", log_path=tmp_path / "service.log") as s,
        httpx.Client(base_url=s.url) as client,
    ):
        batch = [{"prediction": 1, "actual": 1}, {"prediction": 1, "actual": 1, "model": "x"}]
        status, body = answer(client.post("/feedback/batch", json={"items": batch}))
        assert_refused_for_the_cap(status, body, 1)
        assert body.get("index") == 1
