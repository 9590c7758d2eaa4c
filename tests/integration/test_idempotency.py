"""Feedback with an id is counted once: repeats are duplicates, contradictions conflicts, under
32 concurrent senders of the same ids, and across restarts, a kill -9 included."""

import asyncio
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from feedback_monitor.testing import ServiceProcess
from tests.integration.helpers import RawHTTP, scrape, serving, stop, total
from tests.integration.views import (
    Pair,
    Series,
    answer,
    assert_metrics_of,
    assert_predictions,
    assert_series_match,
    named,
    stored_state,
)

pytestmark = pytest.mark.integration

SERIES: Series = ("idem", "1")
CONFLICT = (409, {"error": "Conflicting feedback for id"})
SENDERS = 32

Item = tuple[str, int, int]
"""A feedback's id, prediction and actual."""


def items(prefix: str, count: int, seed: int) -> list[Item]:
    rng = random.Random(seed)
    return [(f"{prefix}-{n}", rng.randint(0, 1), rng.randint(0, 1)) for n in range(count)]


def body(item: Item) -> dict[str, object]:
    id_, prediction, actual = item
    return {"id": id_, "prediction": prediction, "actual": actual, **named(SERIES)}


def pairs(sent: list[Item]) -> list[Pair]:
    return [(prediction, actual) for _, prediction, actual in sent]


def test_an_identical_repeat_is_a_duplicate_not_counted_again(client: httpx.Client) -> None:
    first = client.post("/feedback", json=body(("r-1", 1, 0)))
    assert first.status_code == 200, first.text
    assert list(first.json()) == ["success", "metrics"]  # no "duplicate" on the first
    assert client.post("/feedback", json=body(("r-2", 1, 1))).status_code == 200
    before = stored_state(client)
    status, repeat = answer(client.post("/feedback", json=body(("r-1", 1, 0))))
    assert (status, list(repeat), repeat["success"], repeat["duplicate"]) == (
        200,
        ["success", "metrics", "duplicate"],
        True,
        True,
    )
    assert_metrics_of(repeat["metrics"], [(1, 0), (1, 1)])  # the current metrics
    assert stored_state(client) == before


def test_a_repeated_join_and_a_repeated_prediction_are_duplicates(client: httpx.Client) -> None:
    prediction = {"id": "j-1", "prediction": 1, **named(SERIES)}
    assert answer(client.post("/predictions", json=prediction)) == (201, {"success": True})
    assert answer(client.post("/predictions", json=prediction)) == (
        201,
        {"success": True, "duplicate": True},
    )
    assert client.post("/feedback", json={"id": "j-1", "actual": 1}).status_code == 200
    before = stored_state(client)
    status, repeat = answer(client.post("/feedback", json={"id": "j-1", "actual": 1}))
    assert (status, repeat["duplicate"]) == (200, True)
    assert_metrics_of(repeat["metrics"], [(1, 1)])
    assert stored_state(client) == before
    assert_predictions(client, SERIES, stored=1, labelled=1, expired=0)


def test_a_different_outcome_for_a_counted_id_is_a_conflict(client: httpx.Client) -> None:
    assert client.post("/feedback", json=body(("x-1", 1, 1))).status_code == 200
    prediction = {"id": "x-2", "prediction": 0, **named(SERIES)}
    assert client.post("/predictions", json=prediction).status_code == 201
    assert client.post("/feedback", json={"id": "x-2", "actual": 0}).status_code == 200
    before = stored_state(client)
    for conflicting in (
        body(("x-1", 1, 0)),
        body(("x-1", 0, 1)),
        {"id": "x-1", "actual": 0},
        {"id": "x-2", "actual": 1},
        body(("x-2", 0, 1)),
    ):
        assert answer(client.post("/feedback", json=conflicting)) == CONFLICT, conflicting
    assert stored_state(client) == before


async def send_all(url: str, plans: list[list[dict[str, object]]]) -> list[tuple[str, int, Any]]:
    """Each plan over a connection of its own, all at once: (id, status, body) of each answer."""
    answers: list[tuple[str, int, Any]] = []
    connections = [await RawHTTP.connect(url) for _ in plans]

    async def run(http: RawHTTP, plan: list[dict[str, object]]) -> None:
        for sent in plan:
            status, got = await http.post_json("/feedback", json.dumps(sent).encode())
            answers.append((str(sent["id"]), status, json.loads(got)))
        await http.close()

    async with asyncio.TaskGroup() as group:
        for http, plan in zip(connections, plans, strict=True):
            group.create_task(run(http, plan))
    return answers


def test_32_concurrent_senders_of_the_same_ids_count_each_once(
    service: ServiceProcess, client: httpx.Client
) -> None:
    direct = items("same", 48, seed=1)
    joined = items("late", 16, seed=2)
    predictions = [{"id": id_, "prediction": p, **named(SERIES)} for id_, p, _ in joined]
    assert answer(client.post("/predictions/batch", json={"items": predictions}))[0] == 201
    every = [body(item) for item in direct] + [{"id": i, "actual": a} for i, _, a in joined]
    plans = [random.Random(n).sample(every, len(every)) for n in range(SENDERS)]

    commits_before = commits(client)
    answers = asyncio.run(send_all(service.url, plans))

    assert Counter(status for _, status, _ in answers) == {200: SENDERS * len(every)}
    assert commits(client) - commits_before < len(answers)  # they overlapped: group commits
    counted = Counter(id_ for id_, _, got in answers if not got.get("duplicate"))
    assert counted == dict.fromkeys([id_ for id_, _, _ in direct + joined], 1)
    assert all(got["success"] is True for _, _, got in answers)
    assert_series_match(client, {SERIES: pairs(direct + joined)})
    assert_predictions(client, SERIES, stored=len(joined), labelled=len(joined), expired=0)


def commits(client: httpx.Client) -> float:
    return total(scrape(client), "feedback_commit_batch_size_count")


def resend(url: str, sent: list[Item]) -> list[tuple[str, int, Any]]:
    """Every item again, over 8 connections."""
    plans = [[body(item) for item in sent[n::8]] for n in range(8)]
    return asyncio.run(send_all(url, plans))


@pytest.mark.parametrize("how", ["terminate", "kill"])
def test_repeats_after_a_restart_are_still_duplicates(tmp_path: Path, how: str) -> None:
    data, log = tmp_path / "data", tmp_path / "service.log"
    sent = items("restart", 40, seed=3)
    with serving(data, log_path=log) as service:
        assert {status for _, status, _ in resend(service.url, sent)} == {200}
        stop(service, how)
    with serving(data, log_path=log) as service, httpx.Client(base_url=service.url) as client:
        before = stored_state(client)
        again = resend(service.url, sent)
        assert [(status, got.get("duplicate")) for _, status, got in again] == [(200, True)] * 40
        for _, _, got in again:  # each with the current metrics
            assert_metrics_of(got["metrics"], pairs(sent))
        assert stored_state(client) == before
        assert_series_match(client, {SERIES: pairs(sent)})
        id_, prediction, actual = sent[0]
        assert (
            answer(client.post("/feedback", json=body((id_, prediction, 1 - actual)))) == CONFLICT
        )


async def send_until_killed(
    service: ServiceProcess, plans: list[list[dict[str, object]]], kill_after: int
) -> tuple[set[str], int]:
    """Send the plans, kill -9 the server after ``kill_after`` answers: the ids acknowledged,
    and how many connections saw the server go."""
    acknowledged: set[str] = set()
    enough = asyncio.Event()
    lost = 0

    async def run(plan: list[dict[str, object]]) -> None:
        nonlocal lost
        http = await RawHTTP.connect(service.url)
        try:
            for sent in plan:
                status, _ = await http.post_json("/feedback", json.dumps(sent).encode())
                assert status == 200
                acknowledged.add(str(sent["id"]))
                if len(acknowledged) >= kill_after:
                    enough.set()
        except (OSError, asyncio.IncompleteReadError):  # the server is gone
            lost += 1
        finally:
            http.writer.close()

    async def kill() -> None:
        await enough.wait()
        service.kill()

    killer = asyncio.create_task(kill())
    try:
        await asyncio.gather(*(run(plan) for plan in plans))
    finally:
        killer.cancel()
    return acknowledged, lost


def test_retrying_everything_after_a_kill_9_counts_each_id_exactly_once(
    tmp_path: Path,
) -> None:
    data, log = tmp_path / "data", tmp_path / "service.log"
    sent = items("crash", 1600, seed=4)
    plans = [[body(item) for item in sent[n::8]] for n in range(8)]
    with serving(data, log_path=log) as service:
        acknowledged, lost = asyncio.run(send_until_killed(service, plans, kill_after=300))
    assert lost > 0, "every request was answered before the kill"
    assert 300 <= len(acknowledged) < len(sent)
    with serving(data, log_path=log) as service, httpx.Client(base_url=service.url) as client:
        again = resend(service.url, sent)  # the client's retry of everything
        assert {status for _, status, _ in again} == {200}
        duplicates = {id_ for id_, _, got in again if got.get("duplicate")}
        assert acknowledged <= duplicates  # acknowledged before the crash, so stored
        assert_series_match(client, {SERIES: pairs(sent)})
