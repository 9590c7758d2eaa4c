"""SQLiteStore.write with ids: predictions joined by their feedback, idempotent repeats,
conflicts, entries refused whole, expiry; checked against plain dict bookkeeping and sklearn."""

import bisect
import copy
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sklearn.metrics import confusion_matrix, log_loss

from feedback_monitor.confusion import Counts
from feedback_monitor.records import Feedback, Prediction
from feedback_monitor.scores import ScoreHistogram
from feedback_monitor.series import DELAY_BUCKETS, SCORE_BINS, SeriesState
from feedback_monitor.store import Accepted, Entry, Refused, Series
from feedback_monitor.store.sqlite import SQLiteStore

NOW = 1_700_000_000.0
A: Series = ("default", "")
FRAUD: Series = ("fraud", "v2")
Record = Feedback | Prediction


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path)
    yield opened
    opened.close()


def entry(*records: Record) -> Entry:
    return Entry({}, list(enumerate(records)))


def one(store: SQLiteStore, *records: Record, now: float = NOW) -> Accepted | Refused:
    (outcome,), _ = store.write([entry(*records)], now)
    return outcome


def histogram(*delays: float) -> tuple[int, ...]:
    """Per-bucket counts, each delay in the first bucket whose upper bound holds it."""
    counts = [0] * (len(DELAY_BUCKETS) + 1)
    for delay in delays:
        counts[bisect.bisect_left(DELAY_BUCKETS, delay)] += 1
    return tuple(counts)


def test_the_same_feedback_id_counts_once(store: SQLiteStore) -> None:
    first = Feedback(1, 0, *FRAUD, id="f-1")
    assert one(store, first) == Accepted(1, 0, [FRAUD])
    assert one(store, first) == Accepted(0, 1, [FRAUD])
    assert one(store, first._replace(score=0.3, timestamp=NOW - 5)) == Accepted(0, 1, [FRAUD])
    for other in (first._replace(actual=1), first._replace(prediction=0)):
        assert one(store, other) == Refused(409, "Conflicting feedback for id", "conflict", 0)
    assert store.load()[FRAUD].counts == Counts(fp=1)


@pytest.mark.parametrize(
    ("timestamp", "stored_at", "delay"),
    [(NOW - 90, NOW - 60, 90.0), (None, NOW - 5000, 5000.0), (NOW - 86400, NOW, 86400.0),
     (NOW - 10**8, NOW, 10.0**8), (NOW + 30, NOW, 0.0)],
    ids=["timestamped", "stored time", "on a bucket bound", "past every bound", "clock ahead"],
)  # fmt: skip
def test_a_prediction_then_its_feedback_counts_under_the_prediction(
    store: SQLiteStore, timestamp: float | None, stored_at: float, delay: float
) -> None:
    prediction = Prediction("p-1", 1, *FRAUD, score=0.8, timestamp=timestamp)
    assert one(store, prediction, now=stored_at) == Accepted(1, 0, [FRAUD])
    assert store.load() == {FRAUD: SeriesState(predicted=1)}
    waiting = store.load()[FRAUD]
    assert (waiting.pending, waiting.label_coverage) == (1, 0.0)
    # The label names neither model nor prediction: both come from the stored prediction.
    assert one(store, Feedback(None, 0, id="p-1")) == Accepted(1, 0, [FRAUD])
    # The stored prediction's score joins the lifetime score histogram, under the actual class.
    scores = ScoreHistogram.of([(0.8, 0)], SCORE_BINS)
    joined = SeriesState(Counts(fp=1), 1, 1, 0, delay, histogram(delay), scores)
    assert store.load() == {FRAUD: joined}
    assert (joined.pending, joined.label_coverage) == (0, 1.0)


def test_a_batch_of_labels_joins_its_predictions_with_their_scores(store: SQLiteStore) -> None:
    """Labels applied at once (``sql._apply_alone``, in parts of up to 512) count as one by
    one: each under its prediction's series, with its own score or else its prediction's, its
    delay from its prediction's time; a repeat, an unknown id and an id named twice still
    refuse or repeat as they should."""
    n, rng = 1100, random.Random(7)
    stamps = [rng.choice([None, NOW - rng.uniform(0, 10**5)]) for _ in range(n)]
    scores = [rng.random() for _ in range(n)]
    predictions = [
        Prediction(f"p-{i}", int(s > 0.5), *rng.choice([A, FRAUD]), score=s, timestamp=t)
        for i, (s, t) in enumerate(zip(scores, stamps, strict=True))
    ]
    actuals = [rng.randint(0, 1) for _ in range(n)]
    own = [rng.choice([None, rng.random()]) for _ in range(n)]  # a label's own score
    labels = [
        Feedback(None, a, id=f"p-{i}", score=s)
        for i, (a, s) in enumerate(zip(actuals, own, strict=True))
    ]
    assert one(store, *predictions[:30], *predictions, now=NOW - 5) == Accepted(n, 30, [A, FRAUD])
    assert one(store, *labels[:900], Feedback(None, 1, id="nowhere")) == Refused(
        404, "Unknown prediction id", "unknown_id", 900
    )
    assert one(store, *labels[:900], labels[0]) == Accepted(900, 1, [A, FRAUD])
    assert one(store, *labels) == Accepted(n - 900, 900, [A, FRAUD])
    predicted_at = [NOW - 5 if t is None else t for t in stamps]  # stored at NOW - 5
    given = [s if o is None else o for s, o in zip(scores, own, strict=True)]
    loaded = store.load()
    for series in (A, FRAUD):
        mine = [i for i, p in enumerate(predictions) if p.series == series]
        state = loaded[series]
        truth, predicted = [actuals[i] for i in mine], [predictions[i].prediction for i in mine]
        tn, fp, fn, tp = confusion_matrix(truth, predicted, labels=[0, 1]).ravel()
        assert (state.counts, state.predicted, state.labelled) == (
            Counts(tp, tn, fp, fn), len(mine), len(mine)
        )  # fmt: skip
        delays = [NOW - predicted_at[i] for i in mine]
        assert state.delays == histogram(*delays)
        assert state.delay_sum == pytest.approx(sum(delays))
        used = [given[i] for i in mine]
        assert state.scores is not None
        for actual in (0, 1):  # a score in bin i when i / SCORE_BINS < score <= (i + 1) / ...
            bins = [0] * SCORE_BINS
            for score, i in zip(used, mine, strict=True):
                bins[max(math.ceil(score * SCORE_BINS) - 1, 0)] += actuals[i] == actual
            assert list(state.scores.counts[actual]) == bins
        expected = log_loss(truth, used, normalize=False, labels=[0, 1])
        assert state.scores.log_loss_sum == pytest.approx(expected)


def test_a_label_repeating_the_stored_prediction_joins_it(store: SQLiteStore) -> None:
    one(store, Prediction("p-1", 1, *FRAUD))
    assert one(store, Feedback(1, 1, id="p-1")) == Accepted(1, 0, [FRAUD])
    assert store.load()[FRAUD].counts == Counts(tp=1)
    assert A not in store.load()  # the feedback's own (default) series is not created


def test_labels_of_a_stored_prediction_are_idempotent(store: SQLiteStore) -> None:
    one(store, Prediction("p-1", 0, *FRAUD, timestamp=NOW - 10))
    assert one(store, Feedback(None, 1, id="p-1")) == Accepted(1, 0, [FRAUD])
    after = store.load()
    assert one(store, Feedback(None, 1, id="p-1"), now=NOW + 99) == Accepted(0, 1, [FRAUD])
    assert one(store, Feedback(0, 1, id="p-1")) == Accepted(0, 1, [FRAUD])
    assert one(store, Feedback(None, 0, id="p-1")) == Refused(
        409, "Conflicting feedback for id", "conflict", 0
    )
    assert store.load() == after  # the delay of a repeat is not observed either


def test_an_unknown_id_is_404(store: SQLiteStore) -> None:
    assert one(store, Feedback(None, 1, id="nowhere")) == Refused(
        404, "Unknown prediction id", "unknown_id", 0
    )
    assert store.load() == {}


def test_a_label_contradicting_the_stored_prediction_is_409(store: SQLiteStore) -> None:
    one(store, Prediction("p-1", 1, *FRAUD))
    refused = one(store, Feedback(0, 1, id="p-1"))
    assert isinstance(refused, Refused)
    assert (refused.status, refused.reason, refused.at) == (409, "conflict", 0)
    assert store.load() == {FRAUD: SeriesState(predicted=1)}  # still waiting for its label
    assert one(store, Feedback(None, 1, id="p-1")) == Accepted(1, 0, [FRAUD])


def test_predictions_are_idempotent_and_conflicts_409(store: SQLiteStore) -> None:
    prediction = Prediction("p-1", 1, *FRAUD, score=0.25, timestamp=NOW - 90)
    assert one(store, prediction) == Accepted(1, 0, [FRAUD])
    # A repeat's time is not compared (a retry without one gets the server's clock), nor a
    # score it leaves out.
    for repeat in (prediction, prediction._replace(timestamp=None, score=None)):
        assert one(store, repeat, now=NOW + 30) == Accepted(0, 1, [FRAUD])
    for other in (
        prediction._replace(prediction=0),
        prediction._replace(model="other"),
        prediction._replace(version="v3"),
        prediction._replace(score=0.5),
    ):
        assert one(store, other) == Refused(409, "Conflicting prediction for id", "conflict", 0)
    assert store.load() == {FRAUD: SeriesState(predicted=1)}
    # The first time stays: the label's delay counts from it.
    assert one(store, Feedback(None, 1, id="p-1")) == Accepted(1, 0, [FRAUD])
    assert store.load()[FRAUD].delay_sum == 90.0


def test_a_score_absent_from_a_prediction_and_its_repeat_is_the_same(store: SQLiteStore) -> None:
    prediction = Prediction("p-1", 1, *FRAUD)
    assert one(store, prediction) == Accepted(1, 0, [FRAUD])
    assert one(store, prediction) == Accepted(0, 1, [FRAUD])
    # A score the first did not give cannot be stored by a repeat: it conflicts.
    assert one(store, prediction._replace(score=0.0)) == Refused(
        409, "Conflicting prediction for id", "conflict", 0
    )
    assert store.load() == {FRAUD: SeriesState(predicted=1)}


def test_a_refused_entry_leaves_no_trace_and_the_others_stand(store: SQLiteStore) -> None:
    kept = Entry({A: Counts(tp=2)}, [(0, Prediction("p-1", 1, *FRAUD))])
    refused = Entry(
        {("new", ""): Counts(tn=5), FRAUD: Counts(fn=1)},
        [(3, Prediction("p-2", 1, *FRAUD)), (7, Feedback(None, 1, id="p-1")),
         (9, Feedback(None, 1, id="nowhere"))],
    )  # fmt: skip
    reused = entry(Prediction("p-2", 0, *FRAUD))  # p-2 is free again after the rollback
    alone = Entry({A: Counts(fp=9)}, [(1, Prediction("p-1", 0, *FRAUD))])  # one keyed item
    outcomes, totals = store.write([kept, refused, reused, alone], NOW)
    assert outcomes == [
        Accepted(3, 0, [A, FRAUD]),
        Refused(404, "Unknown prediction id", "unknown_id", 9),
        Accepted(1, 0, [FRAUD]),
        Refused(409, "Conflicting prediction for id", "conflict", 1),
    ]
    expected = {A: SeriesState(Counts(tp=2)), FRAUD: SeriesState(predicted=2)}
    assert totals == expected
    assert store.load() == expected
    assert one(store, Feedback(None, 1, id="p-2")) == Accepted(1, 0, [FRAUD])
    assert store.load()[FRAUD].counts == Counts(fn=1)  # p-2 is reused's prediction 0


def test_an_entry_under_a_cap_is_refused_at_its_first_item_past_it(store: SQLiteStore) -> None:
    """An entry that may create series carries the cap: it is refused at the first item that
    creates one past it; a join creates none, and a refused entry leaves its room to the next."""
    store.write([entry(Prediction("p-1", 1, *FRAUD))], NOW)
    join = (0, Feedback(1, 1, id="p-1"))  # names "default", joins FRAUD's prediction
    new = (4, Feedback(1, 0, "new", id="f-1"))  # creates ("new", "")
    outcomes, totals = store.write([Entry({}, [join, new], 1), Entry({}, [join], 1)], NOW)
    assert outcomes == [Refused(422, "Too many series", "series_cap", 4), Accepted(1, 0, [FRAUD])]
    assert totals == {FRAUD: SeriesState(Counts(tp=1), predicted=1, labelled=1,
                                         delays=totals[FRAUD].delays)}  # fmt: skip
    plain = (1, Feedback(0, 0, "plain"))
    two = [Entry({}, [plain, (2, Feedback(1, 1, "x"))], 2), Entry({}, [new], 2)]
    outcomes, _ = store.write(two, NOW)  # the first is refused at its second new series
    assert outcomes == [Refused(422, "Too many series", "series_cap", 2),
                        Accepted(1, 0, [("new", "")])]  # fmt: skip
    assert sorted(store.load()) == [FRAUD, ("new", "")]
    assert one_entry(store, Entry({}, [(7, Feedback(1, 1, "x"))], 2)) == Refused(
        422, "Too many series", "series_cap", 7
    )
    stored: list[tuple[int, Record]] = [(3, Feedback(1, 1, *FRAUD)), (5, Feedback(0, 1, "new"))]
    assert one_entry(store, Entry({}, stored, 2)) == Accepted(2, 0, [FRAUD, ("new", "")])


def test_entries_of_one_transaction_share_the_room_under_the_cap(store: SQLiteStore) -> None:
    """Series an entry creates take room from the entries after it in the same transaction,
    though their rows are written at its end; and a feedback may join them."""
    created = Entry({}, [(0, Prediction("p-1", 1, *FRAUD))], 2)
    join = Entry({}, [(0, Feedback(1, 1, "other", id="p-1"))], 2)
    more = [Entry({}, [(0, Feedback(0, 0, f"m{n}"))], 2) for n in range(2)]
    outcomes, totals = store.write([created, join, *more], NOW)
    assert outcomes == [
        Accepted(1, 0, [FRAUD]),
        Accepted(1, 0, [FRAUD]),
        Accepted(1, 0, [("m0", "")]),
        Refused(422, "Too many series", "series_cap", 0),
    ]
    assert totals[FRAUD].counts == Counts(tp=1)
    assert sorted(store.load()) == [FRAUD, ("m0", "")]


def test_counted_series_take_their_place_under_the_cap_at_their_first_item(
    store: SQLiteStore,
) -> None:
    """An entry's counted feedback is checked against the cap at the first item of each of its
    series, in order with the items kept whole."""
    store.write([entry(Prediction("p-1", 1, *FRAUD))], NOW)
    kept: list[tuple[int, Record]] = [(1, Feedback(1, 1, "kept", id="k-1"))]
    counted = {("counted", ""): Counts(tp=2)}
    first = Entry(counted, kept, 2, ((3, ("counted", "")),))
    second = Entry(counted, kept, 2, ((0, ("counted", "")),))
    assert one_entry(store, first) == Refused(422, "Too many series", "series_cap", 3)
    assert one_entry(store, second) == Refused(422, "Too many series", "series_cap", 1)
    assert sorted(store.load()) == [FRAUD]
    assert one_entry(store, Entry(counted, [], 2, ((0, ("counted", "")),))) == Accepted(
        2, 0, [("counted", "")]
    )
    assert one_entry(store, Entry({("x", ""): Counts(fn=1)}, [], 2, ((5, ("x", "")),))) == (
        Refused(422, "Too many series", "series_cap", 5)
    )
    assert store.load()[("counted", "")].counts == Counts(tp=2)


def one_entry(store: SQLiteStore, written: Entry) -> Accepted | Refused:
    (outcome,), _ = store.write([written], NOW)
    return outcome


def test_many_labels_in_one_transaction_count_as_one_by_one(store: SQLiteStore) -> None:
    """Alone with its id, a prediction, or a feedback with its prediction, is stored in one
    statement with the others like it; ids named twice, joins, conflicts and scores without ids
    go entry by entry."""

    def stream(tag: str) -> list[Entry]:
        series = (f"fraud-{tag}", "v1")
        return [
            entry(Feedback(1, 1, *series, id=f"{tag}-1")),
            entry(Feedback(1, 1, *series, id=f"{tag}-1")),  # the same again: a repeat
            entry(Feedback(0, 1, *series, id=f"{tag}-1")),  # another outcome: a conflict
            entry(Prediction(f"{tag}-p", 1, *series)),
            entry(Feedback(None, 0, id=f"{tag}-p")),  # joins the prediction just stored
            entry(Feedback(0, 0, *series, id=f"{tag}-2", score=0.3)),
            entry(Feedback(1, 0, *series, score=0.9)),  # a score, no id
            entry(Feedback(1, 1, *series, id=f"{tag}-3", timestamp=NOW - 60)),
            entry(Prediction(f"{tag}-q", 0, *series, score=0.4, timestamp=NOW - 30)),
        ]

    together, _ = store.write(stream("t"), NOW)
    apart = [store.write([e], NOW)[0][0] for e in stream("a")]
    renamed = [o._replace(series=[("fraud-a", "v1")]) if isinstance(o, Accepted) else o
               for o in together]  # fmt: skip
    assert renamed == apart
    loaded = store.load()
    assert loaded[("fraud-t", "v1")] == loaded[("fraud-a", "v1")]
    assert loaded[("fraud-t", "v1")].counts == Counts(tp=2, tn=1, fp=2)
    assert (loaded[("fraud-t", "v1")].predicted, loaded[("fraud-t", "v1")].pending) == (2, 1)
    assert one(store, Feedback(None, 1, id="t-q")) == Accepted(1, 0, [("fraud-t", "v1")])
    # The label's delay from the prediction's own time: beside t-p's (0 s) and t-3's (60 s).
    assert store.load()[("fraud-t", "v1")].delays == histogram(0.0, 60.0, 30.0)


def test_expiry_drops_unlabelled_predictions_stored_before_the_cutoff(
    store: SQLiteStore,
) -> None:
    one(store, Prediction("old", 1, *FRAUD), Prediction("old-labelled", 1, *FRAUD), now=100)
    one(store, Prediction("old-default", 0), Feedback(1, 1, id="direct"), now=100)
    one(store, Prediction("young", 1, *FRAUD, timestamp=0.0), now=200)  # old, stored late
    one(store, Feedback(None, 1, id="old-labelled"), now=150)
    assert store.expire(before=150) == {
        FRAUD: SeriesState(Counts(tp=1), 3, 1, 1, 50.0, histogram(50.0)),
        A: SeriesState(Counts(tp=1), 1, 0, 1),
    }
    assert store.expire(before=150) == {}  # nothing left to expire
    state = store.load()[FRAUD]
    assert (state.pending, state.label_coverage) == (1, 1 / 3)
    assert one(store, Feedback(None, 1, id="old")) == Refused(
        404, "Unknown prediction id", "unknown_id", 0
    )
    assert one(store, Feedback(None, 1, id="young")) == Accepted(1, 0, [FRAUD])
    # An id older than the cutoff is forgotten, so it counts anew.
    assert one(store, Feedback(1, 1, id="direct")) == Accepted(1, 0, [A])
    # A label restarted its id's time: a retry of it is still a repeat, until that runs out.
    assert one(store, Feedback(None, 1, id="old-labelled")) == Accepted(0, 1, [FRAUD])
    store.expire(before=151)
    assert one(store, Feedback(None, 1, id="old-labelled")) == Refused(
        404, "Unknown prediction id", "unknown_id", 0
    )


def test_predictions_labels_and_ids_survive_a_reopen(tmp_path: Path) -> None:
    first = SQLiteStore(tmp_path)
    one(first, Prediction("p-1", 1, *FRAUD, timestamp=NOW - 60), Feedback(0, 0, id="f-1"))
    before = first.load()
    first.close()
    second = SQLiteStore(tmp_path)
    try:
        assert second.load() == before
        assert one(second, Feedback(None, 1, id="p-1")) == Accepted(1, 0, [FRAUD])
        assert one(second, Feedback(0, 0, id="f-1")) == Accepted(0, 1, [A])
        assert one(second, Prediction("p-1", 1, *FRAUD)) == Accepted(0, 1, [FRAUD])
        assert second.load()[FRAUD] == SeriesState(Counts(tp=1), 1, 1, 0, 60.0, histogram(60.0))
    finally:
        second.close()


# A random stream against bookkeeping written from the rules, with sklearn counting.


@dataclass
class Row:
    series: Series
    prediction: int
    actual: int | None
    predicted_at: float


@dataclass
class Book:
    rows: dict[str, Row] = field(default_factory=dict)
    pairs: dict[Series, list[tuple[int, int]]] = field(default_factory=dict)  # (pred, actual)
    predicted: dict[Series, int] = field(default_factory=dict)
    labelled: dict[Series, int] = field(default_factory=dict)
    delays: dict[Series, list[float]] = field(default_factory=dict)

    def count(self, series: Series, prediction: int, actual: int) -> None:
        self.pairs.setdefault(series, []).append((prediction, actual))

    def delay(self, series: Series, seconds: float) -> None:
        self.delays.setdefault(series, []).append(seconds)

    def apply(self, record: Record, now: float) -> tuple[str, Series] | int:
        """ "new" or "repeat" with the series it counts under; or the refusal's status."""
        row = self.rows.get(record.id or "")
        if isinstance(record, Prediction):
            if row is not None:
                same = (row.series, row.prediction) == (record.series, record.prediction)
                return ("repeat", row.series) if same else 409
            at = now if record.timestamp is None else record.timestamp
            self.rows[record.id] = Row(record.series, record.prediction, None, at)
            self.predicted[record.series] = self.predicted.get(record.series, 0) + 1
            return "new", record.series
        if row is None:
            if record.prediction is None:
                return 404
            self.rows[record.id or ""] = Row(record.series, record.prediction, record.actual, now)
            self.count(record.series, record.prediction, record.actual)
            if record.timestamp is not None:
                self.delay(record.series, now - record.timestamp)
            return "new", record.series
        if record.prediction not in (None, row.prediction) or row.actual not in (
            None,
            record.actual,
        ):
            return 409
        if row.actual is not None:
            return "repeat", row.series
        row.actual = record.actual
        self.count(row.series, row.prediction, record.actual)
        self.labelled[row.series] = self.labelled.get(row.series, 0) + 1
        self.delay(row.series, now - row.predicted_at)
        return "new", row.series

    def state(self, series: Series) -> SeriesState:
        predictions, actuals = zip(*self.pairs.get(series, [(0, 0)]), strict=True)
        tn, fp, fn, tp = confusion_matrix(actuals, predictions, labels=[0, 1]).ravel().tolist()
        counts = Counts(tp, tn, fp, fn) if series in self.pairs else Counts()
        delays = self.delays.get(series, [])
        return SeriesState(
            counts, self.predicted.get(series, 0), self.labelled.get(series, 0), 0,
            pytest.approx(sum(delays)), histogram(*delays),  # type: ignore[arg-type]
        )  # fmt: skip


@dataclass(frozen=True)
class Stream:
    """How a random stream's clients behave."""

    largest: int  # records an entry holds at most
    ids: int  # the ids they name
    at_odds: float  # the share of records that contradict what else is said of their id
    labels_known: bool  # whether a label without its prediction names only a stored id


STREAMS = {
    "small entries, often at odds": Stream(3, 30, 0.1, False),
    # Mostly accepted: most of an entry's ids are its alone, applied at once (sql._apply_alone).
    "batches": Stream(40, 400, 0.003, True),
}


def random_record(rng: random.Random, now: float, stream: Stream, stored: Book) -> Record:
    """Mostly consistent about each id (its series, prediction and actual), sometimes not."""
    number = rng.randrange(stream.ids)
    key = f"id-{number}"
    series = [A, FRAUD, ("fraud", "v3")][number % 3]
    prediction, actual = number % 2, number // 2 % 2
    if rng.random() < stream.at_odds:
        series, prediction, actual = rng.choice([A, FRAUD]), 1 - prediction, 1 - actual
    timestamp = rng.choice([None, now - rng.uniform(0, 10**6)])
    if rng.random() < 0.4:
        return Prediction(key, prediction, *series, timestamp=timestamp)
    given = rng.choice([None, prediction])
    if stream.labels_known and key not in stored.rows:
        given = prediction
    return Feedback(given, actual, *series, id=key, timestamp=timestamp)


@pytest.mark.parametrize(
    ("kind", "seed"),
    [
        *(("small entries, often at odds", seed) for seed in range(8)),
        *(("batches", seed) for seed in range(3)),
    ],
)
def test_a_random_stream_matches_the_bookkeeping(store: SQLiteStore, kind: str, seed: int) -> None:
    stream, rng = STREAMS[kind], random.Random(seed)
    book = Book()
    for step in range(40):
        now = NOW + 1000 * step
        entries = [
            [random_record(rng, now, stream, book) for _ in range(rng.randint(1, stream.largest))]
            for _ in range(rng.randint(1, 3))
        ]
        outcomes, _ = store.write([entry(*records) for records in entries], now)
        for records, outcome in zip(entries, outcomes, strict=True):
            trial = copy.deepcopy(book)  # an entry is applied whole or not at all
            applied = [trial.apply(record, now) for record in records]
            refusals = [(i, a) for i, a in enumerate(applied) if isinstance(a, int)]
            if refusals:
                assert isinstance(outcome, Refused)
                assert (outcome.at, outcome.status) == refusals[0]
                continue
            book = trial
            kinds = [a[0] for a in applied if not isinstance(a, int)]
            touched = sorted({a[1] for a in applied if not isinstance(a, int)})
            assert outcome == Accepted(kinds.count("new"), kinds.count("repeat"), touched)
    assert store.load() == {series: book.state(series) for series in store.load()}
    assert set(store.load()) == {*book.pairs, *book.predicted}
