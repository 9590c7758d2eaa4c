"""GET /drift in process, its commits stamped over the last hours by the store's clock: the
accuracy in the hour before and after each drift, checked where those windows really differ
(a real server puts a quick test's feedback all in one minute)."""

import math
import time
from pathlib import Path

import httpx
import pytest

from feedback_monitor.drift.watch import SeriesWatch
from feedback_monitor.query import drift_spans
from feedback_monitor.store.sqlite import SQLiteStore
from feedback_monitor.windows import DAY, HOUR, MINUTE, Retention
from tests.asgi import DOC, exchange, get, post, schema_of
from tests.drift_blocks import (
    STEADY,
    WORSE,
    WORST,
    Batch,
    around,
    batch_of,
    blocks,
    found,
)
from tests.stores import ThreadedStore

SERIES = ("context", "v2")
DRIFT = "/api/v1/models/{model}/drift"
COMMITS = blocks([(STEADY, 5_000), (WORSE, 3_000), (WORST, 2_000)], 100, seed=3)
EVERY = 75.0  # seconds between commits: 100 commits over two hours, off the minute
SETTINGS = {"max_batch_items": 1_000, "max_batch_body_bytes": 1 << 20, "max_series": 10}


def assert_documented(response: httpx.Response) -> None:
    """The answer is what the OpenAPI document says GET /drift answers with its status."""
    entry = DOC["paths"][DRIFT]["get"]["responses"][str(response.status_code)]
    schema_of(entry["content"]["application/json"]["schema"]).validate(response.json())


class Clock:
    """The store's clock: each write stamped with the next of ``times``."""

    def __init__(self, times: list[float]) -> None:
        self.times = times
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.times[self.calls - 1]


def test_each_drift_shows_the_accuracy_of_the_hour_before_and_after_it(tmp_path: Path) -> None:
    start = math.floor(time.time() / MINUTE) * MINUTE - 2.5 * HOUR + 7.5
    clock = Clock([start + EVERY * i for i in range(len(COMMITS))])
    drift = get(DRIFT.format(model=SERIES[0]) + f"?version={SERIES[1]}&limit=100")
    requests = [post(batch_of(c, SERIES), path="/feedback/batch") for c in COMMITS]
    *posted, answered = exchange(
        ThreadedStore(SQLiteStore(tmp_path), clock), tmp_path, *requests, drift, **SETTINGS
    )
    now = time.time()
    assert [r.status_code for r in posted] == [200] * len(COMMITS)
    assert clock.calls == len(COMMITS)  # one commit per batch
    assert answered.status_code == 200, answered.text
    assert_documented(answered)

    batches = [Batch(c, t, t) for c, t in zip(COMMITS, clock.times, strict=True)]
    drifts = found(SeriesWatch(), COMMITS)[::-1]
    events = answered.json()["events"]
    assert [(e["detector"], e["time"]) for e in events] == [
        (d.detector, clock.times[d.commit]) for d in drifts
    ]
    for event, d in zip(events, drifts, strict=True):
        context = {k: v for k, v in event.items() if k.startswith(("accuracy", "n_"))}
        assert around(batches, d.commit, event["time"], now) == [context]
    # The windows mean something: whole hours and hours cut short by now, before and after
    # that differ.
    assert {e["time"] + HOUR < now for e in events} == {True, False}
    assert any(e["n_before"] != e["n_after"] for e in events)
    assert any(e["accuracy_before"]["value"] > e["accuracy_after"]["value"] for e in events)


def test_a_series_is_404_until_it_has_feedback_then_stable_with_no_events(
    tmp_path: Path,
) -> None:
    drift = get(DRIFT.format(model=SERIES[0]) + f"?version={SERIES[1]}")
    responses = exchange(
        ThreadedStore(SQLiteStore(tmp_path)),
        tmp_path,
        drift,
        post(batch_of(COMMITS[0], SERIES), path="/feedback/batch"),
        drift,
        **SETTINGS,
    )
    assert [r.status_code for r in responses] == [404, 200, 200]
    for response in responses[::2]:
        assert_documented(response)
    answer: dict[str, object] = responses[2].json()
    assert answer["events"] == []
    assert answer["detectors"] == [
        {"detector": name, "status": 0, "detections": 0} for name in SeriesWatch().statuses()
    ]


@pytest.mark.parametrize("age", [30.0, 2 * HOUR, 3 * DAY, 100 * DAY])  # minutes, hours, days kept
def test_the_windows_around_a_drift_never_share_a_bucket(age: float) -> None:
    """Snapped outwards, both would hold the drift's bucket: a minute, an hour, or (once only
    days are kept) the same day on both sides, before and after then always equal."""
    now = 1_700_000_000.0
    at = now - age + 17.0
    before, after = drift_spans(at, now, Retention())
    assert before
    assert after
    cut = after[0].start
    assert max(span.end for span in before) == cut <= at
    assert at - cut < max(span.resolution for span in before)  # the drift's bucket is after's
    assert all(b.end <= a.start for b in before for a in after)
