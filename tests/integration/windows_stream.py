"""A seeded stream of outcomes sent to a real server, and the minute each clock gives each one.

Every request is sent well inside one minute (it waits, if need be, for the next to begin), so
the minute of each commit is known exactly. Windows and steps are whole minutes, so the minute of
an outcome decides where it lands: its arrival's, or its prediction's (its timestamp, or the
minute its prediction was stored; a timestamp ahead of the arrival is clamped to it).
"""

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from feedback_monitor.windows import DAY, HOUR, MINUTE, TimeView, floor
from tests.asgi import DOC, schema_of
from tests.integration.helpers import wait_until
from tests.integration.views import Series, named

FRAUD_V1: Series = ("fraud", "v1")
FRAUD_V2: Series = ("fraud", "v2")
CHURN: Series = ("churn", "")
SERIES = (FRAUD_V1, FRAUD_V2, CHURN)
WINDOW = "/api/v1/models/{model}/metrics"
POINTS = "/api/v1/models/{model}/series"
Fields = dict[str, Any]
MARGIN = 3.0  # seconds: a request is sent only if it has that long before the minute ends


@dataclass(frozen=True)
class Outcome:
    """A counted outcome: the minutes of its arrival and of its prediction, and what it was."""

    series: Series
    arrived: int
    predicted: int
    prediction: int
    actual: int
    score: float | None

    def minute(self, view: TimeView) -> int:
        return self.arrived if view is TimeView.ARRIVAL else self.predicted


@dataclass(frozen=True)
class Pending:
    """An outcome on its way; ``predicted`` None: at its arrival (no timestamp, or ahead)."""

    series: Series
    predicted: float | None
    prediction: int
    actual: int
    score: float | None

    def arriving(self, minute: int) -> Outcome:
        predicted = minute if self.predicted is None else floor(self.predicted, MINUTE)
        return Outcome(self.series, minute, predicted, self.prediction, self.actual, self.score)


class Sender:
    """Posts random records to ``client``'s server; ``outcomes`` holds every one counted."""

    def __init__(self, client: httpx.Client, seed: int) -> None:
        self.client, self.rng = client, random.Random(seed)
        self.outcomes: list[Outcome] = []
        self.ids = iter(range(10**9))

    def post(self, path: str, body: object, status: int = 200) -> int:
        """``body`` posted and answered inside one minute: that minute."""
        wait_until(_not_late_in_the_minute, MARGIN + 1, "the next minute", every=0.05)
        minute = floor(time.time(), MINUTE)
        response = self.client.post(path, json=body)
        assert response.status_code == status, response.text
        assert floor(time.time(), MINUTE) == minute, f"a request took {MARGIN} s or more"
        return minute

    def send(self, feedback: int, predictions: int) -> None:
        """Predictions, then two batches (labelling half of them each) and one single post."""
        stored = [self.prediction() for _ in range(predictions)]
        minute = self.post("/predictions/batch", {"items": [body for body, _ in stored]}, 201)
        for half in (stored[::2], stored[1::2]):
            items = [self.feedback() for _ in range(feedback)]
            # A prediction without a timestamp was made when it was stored.
            items += [self.label(body, at if "timestamp" in body else minute) for body, at in half]
            self.deliver("/feedback/batch", {"items": [body for body, _ in items]}, items)
        single = self.feedback()
        self.deliver("/feedback", single[0], [single])

    def deliver(self, path: str, body: object, items: Sequence[tuple[Fields, Pending]]) -> None:
        minute = self.post(path, body)
        self.outcomes += [pending.arriving(minute) for _, pending in items]

    def prediction(self) -> tuple[Fields, float | None]:
        series, (stamp, at) = self.series(), self.timestamp()
        body = {"id": f"p-{next(self.ids)}", "prediction": self.bit(), **named(series),
                **self.score(), **stamp}  # fmt: skip
        return body, at

    def label(self, stored: Fields, at: float | None) -> tuple[Fields, Pending]:
        actual = self.bit()
        score = self.score(actual)
        known = score.get("score", stored.get("score"))  # its own score, else the prediction's
        series = (stored["model"], stored["version"])
        pending = Pending(series, at, stored["prediction"], actual, known)
        return {"id": stored["id"], "actual": actual, **score}, pending

    def feedback(self) -> tuple[Fields, Pending]:
        series, prediction, actual = self.series(), self.bit(), self.bit()
        score, (stamp, at) = self.score(actual), self.timestamp()
        body = {"prediction": prediction, "actual": actual, **named(series), **score, **stamp}
        if self.rng.random() < 0.2:
            body["id"] = f"f-{next(self.ids)}"
        return body, Pending(series, at, prediction, actual, score.get("score"))

    def series(self) -> Series:
        return self.rng.choice(SERIES)

    def bit(self) -> int:
        return self.rng.randrange(2)

    def score(self, actual: int | None = None) -> Fields:
        """No score, or one that leans towards ``actual`` (if known), now and then clipped to
        exactly 0 or 1."""
        if self.rng.random() < 0.3:
            return {}
        lean = 0.0 if actual is None else 0.2 * (2 * actual - 1)
        return {"score": min(max(self.rng.gauss(0.5 + lean, 0.3), 0.0), 1.0)}

    def timestamp(self) -> tuple[Fields, float | None]:
        """No timestamp; one minutes to days back (Unix seconds or RFC 3339); or one an hour
        ahead, which is clamped to the arrival. With the time it places the outcome at."""
        choice, now = self.rng.random(), time.time()
        if choice < 0.3:
            return {}, None
        if choice < 0.35:
            return {"timestamp": now + HOUR}, None
        stamp = now - self.rng.choice([self.rng.uniform(MINUTE, 30 * HOUR), 3.0 * DAY])
        if self.rng.random() < 0.5:
            return {"timestamp": datetime.fromtimestamp(stamp, UTC).isoformat()}, stamp
        return {"timestamp": stamp}, stamp


def _not_late_in_the_minute() -> bool:
    return time.time() % MINUTE <= MINUTE - MARGIN


def within(outcomes: Sequence[Outcome], series: Series, view: TimeView, start: float,
           end: float) -> list[Outcome]:  # fmt: skip
    """The outcomes of ``series`` that ``view`` places in ``[start, end)``."""
    return [o for o in outcomes if o.series == series and start <= o.minute(view) < end]


def read(
    client: httpx.Client, path: str, model: str, params: Mapping[str, str], status: int = 200
) -> Any:
    """GET a read endpoint; its JSON answer, checked against the OpenAPI document."""
    response = client.get(path.format(model=model), params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    entry = DOC["paths"][path]["get"]["responses"][str(status)]
    schema_of(entry["content"]["application/json"]["schema"]).validate(response.json())
    return response.json()
