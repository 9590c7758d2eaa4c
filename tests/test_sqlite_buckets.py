"""SQLiteStore's time buckets against the outcomes themselves: random streams written at
chosen clocks, read back as windows and points in both views, expired, and reopened."""

import random
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import pytest

from feedback_monitor import windows
from feedback_monitor.confusion import Counts
from feedback_monitor.query import score_metrics
from feedback_monitor.records import Feedback, Prediction
from feedback_monitor.scores import ScoreHistogram
from feedback_monitor.store import Accepted, Entry, Series
from feedback_monitor.store.sqlite import SQLiteStore
from feedback_monitor.windows import DAY, HOUR, MINUTE, RESOLUTIONS, Retention, Span, TimeView
from tests.window_oracle import assert_score_metrics, confusion

FRAUD: Series = ("fraud", "v1")
CHURN: Series = ("churn", "")
T0 = 20_000 * DAY  # a midnight (UTC), 2024-10-04
ARRIVAL, PREDICTION = TimeView.ARRIVAL, TimeView.PREDICTION


@dataclass(frozen=True)
class Outcome:
    """One counted outcome and where each clock places it."""

    series: Series
    arrived: float
    predicted: float
    prediction: int
    actual: int
    score: float | None

    def at(self, view: TimeView) -> float:
        return self.arrived if view is ARRIVAL else self.predicted


class Stream:
    """Random writes to a store at increasing clocks, and every outcome they count."""

    def __init__(self, store: SQLiteStore, seed: int) -> None:
        self.store, self.rng = store, random.Random(seed)
        self.now = float(T0 + self.rng.randrange(DAY))
        self.outcomes: list[Outcome] = []
        self.waiting: list[tuple[Prediction, float]] = []  # stored predictions, and when
        self.labelled: list[Feedback] = []  # feedback with an id, to repeat
        self.ids = iter(range(10**9))

    def run(self, writes: int, every: float) -> None:
        for _ in range(writes):
            self.now += self.rng.uniform(0, every)
            entries = [self.entry() for _ in range(self.rng.randint(1, 3))]
            outcomes, _ = self.store.write(entries, self.now)
            assert all(isinstance(outcome, Accepted) for outcome in outcomes)

    def entry(self) -> Entry:
        deltas: dict[Series, Counts] = {}
        for _ in range(self.rng.randrange(4)):  # plain feedback: counted at its arrival
            series, prediction, actual = self.series(), self.bit(), self.bit()
            deltas[series] = deltas.get(series, Counts()).add(prediction, actual)
            self.count(series, self.now, prediction, actual, None)
        keyed = [self.item() for _ in range(self.rng.randrange(4))]
        return Entry(deltas, list(enumerate(keyed)))

    def item(self) -> Feedback | Prediction:
        kind = self.rng.choice(["scored", "timed", "keyed", "predict", "join", "repeat"])
        if kind == "join" and self.waiting:
            return self.join()
        if kind == "repeat" and self.labelled:
            return self.rng.choice(self.labelled)  # a repeat: counted once only
        if kind in ("predict", "join", "repeat"):
            return self.predict()
        return self.feedback(kind)

    def feedback(self, kind: str) -> Feedback:
        series, prediction, actual = self.series(), self.bit(), self.bit()
        score, stamp = self.score(), self.timestamp()
        if kind == "scored":
            stamp = None
        item = Feedback(prediction, actual, *series, score=score, timestamp=stamp)
        if kind == "keyed":
            item = item._replace(id=f"f-{next(self.ids)}")
            self.labelled.append(item)
        predicted = self.now if stamp is None else min(stamp, self.now)
        self.count(series, predicted, prediction, actual, score)
        return item

    def predict(self) -> Prediction:
        item = Prediction(f"p-{next(self.ids)}", self.bit(), *self.series(), self.score(),
                          self.timestamp())  # fmt: skip
        self.waiting.append((item, self.now))
        return item

    def join(self) -> Feedback:
        stored, stored_at = self.waiting.pop(self.rng.randrange(len(self.waiting)))
        actual, score = self.bit(), self.score()
        stamp = stored_at if stored.timestamp is None else stored.timestamp
        known = score if score is not None else stored.score
        self.count(stored.series, min(stamp, self.now), stored.prediction, actual, known)
        return Feedback(None, actual, id=stored.id, score=score)  # its series is the stored one

    def count(self, series: Series, predicted: float, p: int, a: int, s: float | None) -> None:
        self.outcomes.append(Outcome(series, self.now, predicted, p, a, s))

    def series(self) -> Series:
        return self.rng.choice([FRAUD, FRAUD, CHURN])

    def bit(self) -> int:
        return self.rng.randrange(2)

    def score(self) -> float | None:
        return self.rng.choice([None, self.rng.random(), float(self.rng.randrange(2))])

    def timestamp(self) -> float | None:
        """None, a time up to two days back, or a little ahead (clamped to the arrival)."""
        ago = self.rng.choice([None, self.rng.uniform(0, 2 * DAY), -self.rng.uniform(0, HOUR)])
        return None if ago is None else self.now - ago


def within(
    stream: Sequence[Outcome], series: Series, view: TimeView, start: int, end: int
) -> list[Outcome]:
    return [o for o in stream if o.series == series and start <= o.at(view) < end]


def assert_window(
    store: SQLiteStore, outcomes: Sequence[Outcome], span: Span, sklearn: bool = False
) -> None:
    """Both series and both views of ``[start, end)`` read from ``span``'s resolution up; the
    score metrics against scikit-learn's too if ``sklearn`` (slower)."""
    for series in (FRAUD, CHURN):
        for view in TimeView:
            expected = within(outcomes, series, view, span.start, span.end)
            pieces = windows.spans(span.start, span.end, span.resolution)
            window = store.window(series, view, pieces)
            pairs = [(o.prediction, o.actual) for o in expected]
            assert window.counts == Counts(**confusion(pairs))
            scored = [(o.score, o.actual) for o in expected if o.score is not None]
            assert_histogram(window.scores, scored)
            if sklearn:
                scores = window.scores
                answer = None if scores is None else msgspec.to_builtins(score_metrics(scores))
                assert_score_metrics(answer, scored)


def assert_histogram(scores: ScoreHistogram | None, scored: list[tuple[float, int]]) -> None:
    """The histogram of the same pairs: the same counts per bin, sums up to rounding."""
    if not scored:
        assert scores is None
        return
    assert scores is not None
    expected = ScoreHistogram.of(scored)
    assert scores.counts == expected.counts
    np.testing.assert_allclose(scores.to_row(), expected.to_row(), rtol=1e-9, atol=1e-12)


def random_spans(rng: random.Random, first: float, last: float, count: int) -> Iterator[Span]:
    """Whole-bucket windows around ``[first, last]`` at every resolution, and one of all."""
    yield Span(0, int(last) + DAY, MINUTE)
    for _ in range(count):
        resolution = rng.choice(RESOLUTIONS)
        a, b = sorted(rng.uniform(first - DAY, last + HOUR) for _ in range(2))
        yield Span.covering(a, b, resolution)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path)
    yield opened
    opened.close()


@pytest.mark.parametrize("seed", range(4))
def test_windows_of_a_random_stream_hold_its_outcomes(tmp_path: Path, seed: int) -> None:
    store = SQLiteStore(tmp_path)
    stream = Stream(store, seed)
    stream.run(writes=60, every=2 * HOUR)
    chosen = list(random_spans(stream.rng, T0, stream.now, 12))
    for index, span in enumerate(chosen):
        assert_window(store, stream.outcomes, span, sklearn=index < 2)
    store.close()
    reopened = SQLiteStore(tmp_path)  # every bucket is in the file
    for span in chosen[:4]:
        assert_window(reopened, stream.outcomes, span)
    reopened.close()


@pytest.mark.parametrize("seed", range(3))
def test_points_count_each_step_that_has_outcomes(store: SQLiteStore, seed: int) -> None:
    stream = Stream(store, seed)
    stream.run(writes=40, every=20 * MINUTE)
    for resolution, step in [(MINUTE, MINUTE), (MINUTE, 7 * MINUTE), (HOUR, 3 * HOUR), (DAY, DAY)]:
        span = Span.covering(T0 - DAY, stream.now + MINUTE, resolution)
        for series in (FRAUD, CHURN):
            for view in TimeView:
                steps: dict[int, list[tuple[int, int]]] = {}
                for o in within(stream.outcomes, series, view, span.start, span.end):
                    start = span.start + int(o.at(view) - span.start) // step * step
                    steps.setdefault(start, []).append((o.prediction, o.actual))
                expected = [(s, Counts(**confusion(pairs))) for s, pairs in sorted(steps.items())]
                assert store.points(series, view, span, step) == expected


def test_a_join_lands_at_its_prediction_in_one_view_and_its_label_in_the_other(
    store: SQLiteStore,
) -> None:
    predicted_at, stored_at, labelled_at = T0 + 100.0, T0 + 500.0, T0 + 3 * HOUR + 30
    store.write([Entry({}, [(0, Prediction("a", 1, *FRAUD, 0.8, predicted_at))])], stored_at)
    store.write([Entry({}, [(0, Prediction("b", 0, *FRAUD))])], stored_at)
    store.write([Entry({}, [(0, Feedback(None, 1, id="a")), (1, Feedback(None, 1, id="b"))])],
                labelled_at)  # fmt: skip
    minute = [Span(T0 + 60, T0 + 120, MINUTE)]  # the prediction's own minute, and no other
    assert store.window(FRAUD, PREDICTION, minute).counts == Counts(tp=1)
    assert store.window(FRAUD, ARRIVAL, minute).counts == Counts()
    at_store = [Span(T0 + 480, T0 + 540, MINUTE)]  # without a timestamp: when it was stored
    assert store.window(FRAUD, PREDICTION, at_store).counts == Counts(fn=1)
    label = [Span(T0 + 3 * HOUR, T0 + 3 * HOUR + 60, MINUTE)]
    assert store.window(FRAUD, ARRIVAL, label).counts == Counts(tp=1, fn=1)
    assert store.window(FRAUD, PREDICTION, label).counts == Counts()
    scores = store.window(FRAUD, PREDICTION, minute).scores  # the stored prediction's score
    assert scores is not None
    assert scores.total == 1
    assert scores.brier() == pytest.approx((0.8 - 1) ** 2)


def test_expired_minutes_leave_hours_and_days_that_still_answer(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    stream = Stream(store, seed=99)
    stream.run(writes=50, every=2 * HOUR)
    retention = Retention(minute=6 * HOUR, hour=2 * DAY, day=None)
    cutoffs = retention.cutoffs(stream.now)
    store.expire(0.0, cutoffs)  # no stored prediction is old enough to go
    store.close()
    store = SQLiteStore(tmp_path)
    for resolution in RESOLUTIONS:
        cutoff = cutoffs.get(resolution, 0.0)
        kept_from = -windows.floor(-cutoff, resolution)  # the first bucket kept
        assert_window(store, stream.outcomes, Span(kept_from, int(stream.now) + DAY, resolution))
        if resolution in cutoffs:  # everything before the cutoff is gone, in both views
            gone = Span(0, kept_from, resolution)
            for view in TimeView:
                assert store.window(FRAUD, view, [gone]).counts == Counts()
                assert store.points(FRAUD, view, gone, resolution) == []
    store.close()


def test_a_backfill_reads_its_histograms_a_few_statements_at_a_time(store: SQLiteStore) -> None:
    """A batch of scored outcomes over a year fills thousands of buckets: their histograms are
    read with a statement per resolution and 500 buckets, not one per bucket (SQLite slowed to
    0.2 ms a read, 5 s for a batch of 10,000, with a statement open for each), and all of them
    merge."""
    rng = random.Random(5)
    now = T0 + 400 * DAY
    sent = [
        Feedback(rng.randrange(2), rng.randrange(2), *FRAUD, f"b{index}", rng.random(),
                 now - rng.uniform(0, 365 * DAY))
        for index in range(2000)
    ]  # fmt: skip
    items: list[tuple[int, Feedback | Prediction]] = list(enumerate(sent))
    reads: list[str] = []
    store._db.set_trace_callback(
        lambda sql: reads.append(sql) if sql.startswith("SELECT") and "scores" in sql else None
    )
    store.write([Entry({}, items)], now)
    store._db.set_trace_callback(None)
    buckets = {(r, windows.floor(f.timestamp or 0.0, r)) for f in sent for r in RESOLUTIONS}
    assert len(buckets) > 3000
    assert len(reads) <= 3 + len(buckets) // 500
    stream = [Outcome(FRAUD, now, f.timestamp or 0.0, f.prediction or 0, f.actual, f.score)
              for f in sent]  # fmt: skip
    assert_window(store, stream, Span(0, int(now) + DAY, MINUTE), sklearn=True)


def test_a_backfill_over_thousands_of_days_is_stored_whole(store: SQLiteStore) -> None:
    """7,000 outcomes a day apart add to 21,000 bucket rows of 13 values: they go in statements
    of a bounded size, not in one past the database's limit (PostgreSQL takes 65,535 values a
    statement, SQLite's own build 32,766), which failed the whole transaction."""
    if isinstance(store, SQLiteStore):
        store._db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32_766)
    now = T0 + 0.5
    sent = [
        Feedback(index % 2, index // 2 % 2, *FRAUD, f"d{index}", None, now - index * DAY)
        for index in range(7000)
    ]
    outcomes, _ = store.write([Entry({}, list(enumerate(sent)))], now)
    assert outcomes == [Accepted(len(sent), 0, [FRAUD])]
    stream = [Outcome(FRAUD, now, f.timestamp or 0.0, f.prediction or 0, f.actual, None)
              for f in sent]  # fmt: skip
    assert_window(store, stream, Span(0, int(now) + DAY, DAY))
