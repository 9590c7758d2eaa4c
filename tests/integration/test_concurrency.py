"""Many concurrent clients: every acknowledged feedback counted exactly once, every answer true.

Each answer's metrics must come from the committed counts at some moment between the request's
sending and its answer. So for each response there must be integer counts, per cell between
what was acknowledged before it was sent (plus itself) and what had been sent when its answer
arrived, that give exactly its four metrics.
"""

import asyncio
import json
import math
import random
from collections import Counter
from dataclasses import dataclass

import httpx
import pytest

from feedback_monitor.testing import ServiceProcess
from tests.integration.helpers import CELLS, RawHTTP, cell_counts, feedback, scrape, seed_samples

pytestmark = pytest.mark.integration

CONNECTIONS = 64
PER_CONNECTION = 128
WEIGHTS = {"tp": 4, "tn": 3, "fp": 2, "fn": 1}  # unequal, so a swapped cell shows
ORDER = tuple(CELLS)  # tp, tn, fp, fn

Cells = tuple[int, int, int, int]


@dataclass(frozen=True)
class Answer:
    cell: str
    status: int
    body: dict[str, object]
    low: Cells  # acknowledged before it was sent, itself included
    high: Cells  # sent when its answer arrived


def close(value: float, expected: float) -> bool:
    return math.isclose(value, expected, rel_tol=1e-12, abs_tol=0.0)


def explains(metrics: dict[str, float], low: Cells, high: Cells) -> bool:
    """Whether some integer counts with low <= counts <= high give exactly ``metrics``."""
    accuracy, precision = metrics["accuracy"], metrics["precision"]
    recall, f1 = metrics["recall"], metrics["f1_score"]
    if precision == 0.0:  # no true positive yet: the other three ratios say nothing more
        return _explains_without_tp(accuracy, recall, f1, low, high)
    for tp in range(max(low[0], 1), high[0] + 1):
        fp = round(tp / precision - tp)
        fn = round(tp / recall - tp) if recall else -1
        if fn < 0 or not (close(tp / (tp + fp), precision) and close(tp / (tp + fn), recall)):
            continue
        if not close(2 * tp / (2 * tp + fp + fn), f1):
            continue
        if _tn_fits(tp, fp, fn, accuracy, low, high):
            return True
    return False


def _tn_fits(tp: int, fp: int, fn: int, accuracy: float, low: Cells, high: Cells) -> bool:
    if not (low[2] <= fp <= high[2] and low[3] <= fn <= high[3]):
        return False
    if accuracy == 1.0:  # then fp == fn == 0 and any tn in range fits
        return fp == fn == 0 and low[1] <= high[1]
    tn = round((accuracy * (tp + fp + fn) - tp) / (1 - accuracy))
    return low[1] <= tn <= high[1] and close((tp + tn) / (tp + tn + fp + fn), accuracy)


def _explains_without_tp(
    accuracy: float, recall: float, f1: float, low: Cells, high: Cells
) -> bool:
    if low[0] > 0 or recall != 0.0 or f1 != 0.0:
        return False
    wrong_low, wrong_high = low[2] + low[3], high[2] + high[3]  # fp + fn
    for tn in range(low[1], high[1] + 1):
        if accuracy == 0.0:
            wrong = max(wrong_low, 1) if tn == 0 else -1
        else:
            wrong = round(tn / accuracy - tn)
        if wrong_low <= wrong <= wrong_high and tn + wrong and close(tn / (tn + wrong), accuracy):
            return True
    return False


def test_explains_can_fail() -> None:
    """The check itself: exact counts pass, impossible ones do not."""
    m = {"accuracy": 0.7, "precision": 0.8, "recall": 4 / 6, "f1_score": 8 / 11}
    assert explains(m, (4, 3, 1, 2), (4, 3, 1, 2))  # 7/10, 4/5, 4/6, 8/11
    assert explains(m, (1, 1, 0, 0), (9, 9, 9, 9))
    assert not explains(m, (5, 0, 0, 0), (7, 9, 9, 9))  # 4:3:1:2 or 8:6:2:4, no tp in 5..7
    assert not explains(m, (0, 0, 0, 0), (3, 9, 9, 9))  # too few allowed
    assert not explains({**m, "f1_score": 0.7}, (0, 0, 0, 0), (9, 9, 9, 9))
    none = {"accuracy": 1.0, "precision": 0.0, "recall": 0.0, "f1_score": 0.0}
    assert explains(none, (0, 1, 0, 0), (0, 5, 0, 0))
    assert not explains(none, (1, 1, 0, 0), (5, 5, 0, 0))


def mix(seed: int) -> list[list[str]]:
    """What each connection sends, in order: a known, shuffled mix."""
    rng = random.Random(seed)
    cells, weights = list(WEIGHTS), list(WEIGHTS.values())
    return [rng.choices(cells, weights, k=PER_CONNECTION) for _ in range(CONNECTIONS)]


async def send_all(url: str, plan: list[list[str]]) -> list[Answer]:
    sent: Counter[str] = Counter()
    acked: Counter[str] = Counter()
    answers: list[Answer] = []

    def vector(counter: Counter[str], plus: str | None = None) -> Cells:
        tp, tn, fp, fn = (counter[cell] + (cell == plus) for cell in ORDER)
        return tp, tn, fp, fn

    async def connection(cells: list[str]) -> None:
        http = await RawHTTP.connect(url)
        try:
            for cell in cells:
                low = vector(acked, plus=cell)
                sent[cell] += 1
                status, body = await http.post_json(
                    "/feedback", json.dumps(feedback(cell)).encode()
                )
                if status == 200:
                    acked[cell] += 1
                answers.append(Answer(cell, status, json.loads(body), low, vector(sent)))
        finally:
            await http.close()

    async with asyncio.TaskGroup() as group:
        for cells in plan:
            group.create_task(connection(cells))
    return answers


def test_every_feedback_counted_exactly_once(service: ServiceProcess, client: httpx.Client) -> None:
    plan = mix(seed=5)
    answers = asyncio.run(send_all(service.url, plan))

    expected = Counter(cell for cells in plan for cell in cells)
    assert len(answers) == CONNECTIONS * PER_CONNECTION
    assert Counter(answer.status for answer in answers) == {200: len(answers)}
    assert cell_counts(scrape(client)) == {cell: expected[cell] for cell in ORDER}

    unexplained = [
        answer
        for answer in answers
        if answer.body.get("success") is not True
        or not isinstance(metrics := answer.body.get("metrics"), dict)
        or not explains(metrics, answer.low, answer.high)
    ]
    assert unexplained == []

    final = seed_samples(scrape(client))
    tp, tn, fp, fn = (expected[cell] for cell in ORDER)
    gauges = {name: value for (name, _), value in final.items() if not name.endswith("_total")}
    assert gauges == {
        "accuracy": pytest.approx((tp + tn) / (tp + tn + fp + fn), rel=1e-12),
        "precision": pytest.approx(tp / (tp + fp), rel=1e-12),
        "recall": pytest.approx(tp / (tp + fn), rel=1e-12),
        "f1_score": pytest.approx(2 * tp / (2 * tp + fp + fn), rel=1e-12),
    }
