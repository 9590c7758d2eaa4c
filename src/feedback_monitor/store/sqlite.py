"""The embedded default store: one SQLite file in WAL mode with ``synchronous=FULL``.

Format (``PRAGMA user_version`` is the schema version, migrated forward at open):

- ``confusion(model, version, tp, tn, fp, fn, predicted, labelled, expired, delay_sum,
  scores)``: one row per series: its confusion counts, the fate of its stored predictions, the
  sum of its label delays, its lifetime score histogram (``buckets.encode_scores``).
- ``label_delays(model, version, bucket, count)``: the label-delay histogram (``series.py``).
- ``outcomes(id, ...)``: every prediction or feedback that came with an id; ``actual`` is NULL
  while a prediction waits for its label. The id is the primary key, so a repeat is found, not
  counted; rows leave after the prediction TTL (then an id may be counted anew).
- ``buckets(...)``: the counts per minute, hour and day (``buckets.py``).
- ``drift_state(...)``, ``drift_events(...)``: the drift detectors (``watches.py``).
- ``probe(id, at)``: one row, rewritten by ``ping()`` to prove that commits still succeed.

A ``write`` is one transaction for many requests; a refused request leaves no trace and the
others stand (a request of several items with ids runs inside a savepoint of its own; a single
item is refused before it writes anything). With ``synchronous=FULL`` the WAL is
fsynced before ``COMMIT`` returns: whatever a caller acknowledges afterwards survives a crash.
"""

import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from feedback_monitor.confusion import Counts
from feedback_monitor.records import Feedback, Prediction
from feedback_monitor.scores import ScoreHistogram
from feedback_monitor.series import DELAY_BUCKETS, SCORE_BINS, Series, SeriesState, delay_bucket
from feedback_monitor.store import Accepted, DriftEvent, Entry, Point, Refused, Window, buckets
from feedback_monitor.store.buckets import Moment
from feedback_monitor.store.watches import Watches
from feedback_monitor.windows import MINUTE, Span, TimeView, floor

FILENAME = "feedback.sqlite3"

_MIGRATIONS = (
    """
    CREATE TABLE confusion (
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        tp INTEGER NOT NULL,
        tn INTEGER NOT NULL,
        fp INTEGER NOT NULL,
        fn INTEGER NOT NULL,
        PRIMARY KEY (model, version)
    ) WITHOUT ROWID, STRICT;
    CREATE TABLE probe (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL) STRICT;
    """,
    """
    ALTER TABLE confusion ADD COLUMN predicted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE confusion ADD COLUMN labelled INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE confusion ADD COLUMN expired INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE confusion ADD COLUMN delay_sum REAL NOT NULL DEFAULT 0;
    CREATE TABLE label_delays (
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (model, version, bucket)
    ) WITHOUT ROWID, STRICT;
    CREATE TABLE outcomes (
        id TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        prediction INTEGER NOT NULL,
        actual INTEGER,
        score REAL,
        predicted_at REAL NOT NULL,
        stored_at REAL NOT NULL,
        from_prediction INTEGER NOT NULL
    ) WITHOUT ROWID, STRICT;
    CREATE INDEX outcomes_by_age ON outcomes (stored_at);
    """,
    """
    CREATE TABLE buckets (
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        resolution INTEGER NOT NULL,
        start INTEGER NOT NULL,
        a_tp INTEGER NOT NULL, a_tn INTEGER NOT NULL, a_fp INTEGER NOT NULL, a_fn INTEGER NOT NULL,
        p_tp INTEGER NOT NULL, p_tn INTEGER NOT NULL, p_fp INTEGER NOT NULL, p_fn INTEGER NOT NULL,
        a_scores BLOB,
        p_scores BLOB,
        PRIMARY KEY (model, version, resolution, start)
    ) WITHOUT ROWID, STRICT;
    CREATE INDEX buckets_by_age ON buckets (resolution, start);
    """,
    """
    ALTER TABLE confusion ADD COLUMN scores BLOB;
    """,
    """
    CREATE TABLE drift_state (
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        state BLOB NOT NULL,
        PRIMARY KEY (model, version)
    ) WITHOUT ROWID, STRICT;
    CREATE TABLE drift_events (
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        detector TEXT NOT NULL,
        at REAL NOT NULL,
        statistic REAL NOT NULL
    ) STRICT;
    CREATE INDEX drift_events_by_series ON drift_events (model, version, at);
    """,
)

_ADD = """
    INSERT INTO confusion
        (model, version, tp, tn, fp, fn, predicted, labelled, expired, delay_sum, scores)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (model, version) DO UPDATE SET
        tp = tp + excluded.tp, tn = tn + excluded.tn,
        fp = fp + excluded.fp, fn = fn + excluded.fn,
        predicted = predicted + excluded.predicted, labelled = labelled + excluded.labelled,
        expired = expired + excluded.expired, delay_sum = delay_sum + excluded.delay_sum,
        scores = coalesce(excluded.scores, scores)
"""
_ADD_DELAYS = """
    INSERT INTO label_delays VALUES (?, ?, ?, ?)
    ON CONFLICT (model, version, bucket) DO UPDATE SET count = count + excluded.count
"""
_NO_DELAYS = (0,) * (len(DELAY_BUCKETS) + 1)
_NONE = Counts()
_ONE = {(p, a): Counts().add(p, a) for p in (0, 1) for a in (0, 1)}
_COLUMNS = "model, version, tp, tn, fp, fn, predicted, labelled, expired, delay_sum, scores"
_SERIES = f"SELECT {_COLUMNS} FROM confusion"


@dataclass
class _Change:
    """What one transaction adds to one series."""

    counts: Counts = field(default_factory=Counts)
    predicted: int = 0
    labelled: int = 0
    expired: int = 0
    delay_sum: float = 0.0
    delays: dict[int, int] = field(default_factory=dict)
    timed: dict[Moment, Counts] = field(default_factory=dict)  # the counts, placed in time
    scored: dict[Moment, list[tuple[float, int]]] = field(default_factory=dict)

    def place(self, moment: Moment, counts: Counts) -> None:
        self.counts += counts
        self.timed[moment] = self.timed.get(moment, _NONE) + counts

    def outcome(self, now: float, predicted_at: float, item: tuple[int, int, float | None]) -> None:
        """One (prediction, actual, score), predicted at ``predicted_at`` and labelled now."""
        prediction, actual, score = item
        # A prediction stamped in the future is placed at its arrival.
        moment = (floor(now, MINUTE), floor(min(predicted_at, now), MINUTE))
        self.place(moment, _ONE[prediction, actual])
        if score is not None:
            self.scored.setdefault(moment, []).append((score, actual))

    def observe_delay(self, seconds: float) -> None:
        seconds = max(seconds, 0.0)  # a clock ahead of the client's is no negative delay
        self.delay_sum += seconds
        bucket = delay_bucket(seconds)
        self.delays[bucket] = self.delays.get(bucket, 0) + 1


class _Changes(dict[Series, _Change]):
    def __missing__(self, series: Series) -> _Change:
        self[series] = change = _Change()
        return change

    def merge(self, other: "_Changes") -> None:
        for series, change in other.items():
            mine = self[series]
            mine.predicted += change.predicted
            mine.labelled += change.labelled
            mine.expired += change.expired
            mine.delay_sum += change.delay_sum
            for bucket, count in change.delays.items():
                mine.delays[bucket] = mine.delays.get(bucket, 0) + count
            for moment, counts in change.timed.items():
                mine.place(moment, counts)
            for moment, pairs in change.scored.items():
                mine.scored.setdefault(moment, []).extend(pairs)


class _Refusal(Exception):
    def __init__(self, refused: Refused) -> None:
        self.refused = refused


class SQLiteStore:
    """Confusion counts, predictions and idempotency keys in ``<data_dir>/feedback.sqlite3``."""

    def __init__(self, data_dir: Path, lock_timeout: float = 15.0) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / FILENAME
        # Autocommit mode: transactions are opened and closed explicitly below.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._configure(lock_timeout)
        except BaseException:
            self._db.close()
            raise

    def _configure(self, lock_timeout: float) -> None:
        # A server restarted right after a crash waits for the old store process to let go.
        self._db.execute(f"PRAGMA busy_timeout={int(lock_timeout * 1000)}")
        # One writer process owns the file: exclusive locking keeps a second server off it and
        # saves the shared-memory locking on every commit.
        self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._migrate()
        # The only writer holds the file exclusively, so what it wrote is all there is.
        self._delays = self._load_delays()
        self._watches = Watches(self._db)
        self._new_delays: dict[Series, tuple[int, ...]] = {}

    def _migrate(self) -> None:
        (current,) = self._db.execute("PRAGMA user_version").fetchone()
        for number, statement in enumerate(_MIGRATIONS[current:], start=current + 1):
            # executescript commits first, so the script carries its own transaction.
            self._db.executescript(f"BEGIN; {statement}; PRAGMA user_version = {number}; COMMIT;")

    def load(self) -> dict[Series, SeriesState]:
        return self._states(self._db.execute(_SERIES).fetchall(), self._delays)

    def _load_delays(self) -> dict[Series, tuple[int, ...]]:
        delays: dict[Series, list[int]] = {}
        for model, version, bucket, count in self._db.execute("SELECT * FROM label_delays"):
            delays.setdefault((model, version), list(_NO_DELAYS))[bucket] = count
        return {series: tuple(counts) for series, counts in delays.items()}

    def commit(self, deltas: Mapping[Series, Counts]) -> dict[Series, SeriesState]:
        """Add confusion counts, nothing else: ``write`` with id-less feedback only."""
        _, totals = self.write([Entry(dict(deltas), [])], time.time())
        return totals

    def write(
        self, entries: Sequence[Entry], now: float
    ) -> tuple[list[Accepted | Refused], dict[Series, SeriesState]]:
        """Apply every entry that can be applied, in one transaction; the totals it produced."""
        changes = _Changes()
        outcomes: list[Accepted | Refused] = []
        try:
            with _transaction(self._db):
                for entry in entries:
                    outcomes.append(self._apply(entry, now, changes))
                totals = self._add(changes, now)
        except BaseException:
            self._watches.rolled_back()
            raise
        self._committed()
        return outcomes, totals

    def expire(
        self, before: float, cutoffs: Mapping[int, float] | None = None
    ) -> dict[Series, SeriesState]:
        """Drop predictions stored before ``before`` and still unlabelled, and older ids; and
        the time buckets of each resolution older than its cutoff."""
        changes = _Changes()
        with _transaction(self._db):
            buckets.drop_before(self._db, cutoffs or {})
            waiting = self._db.execute(
                "SELECT model, version, count(*) FROM outcomes"
                " WHERE stored_at < ? AND actual IS NULL AND from_prediction GROUP BY 1, 2",
                (before,),
            )
            for model, version, count in waiting.fetchall():
                changes[model, version].expired += count
            self._db.execute("DELETE FROM outcomes WHERE stored_at < ?", (before,))
            totals = self._add(changes, time.time())
        self._committed()
        return totals

    def window(self, series: Series, view: TimeView, spans: Sequence[Span]) -> Window:
        """The counts and scores of a window, as committed."""
        return buckets.window(self._db, series, view, spans)

    def points(self, series: Series, view: TimeView, span: Span, step: int) -> list[Point]:
        """The counts per ``step`` seconds of a span, where there are any."""
        return buckets.points(self._db, series, view, span, step)

    def events(self, series: Series, limit: int) -> list[DriftEvent]:
        """The latest drifts found in the series, newest first."""
        return self._watches.events(series, limit)

    def ping(self) -> None:
        """A real write: a full disk or a lost lock fails here, not only in the next commit."""
        with _transaction(self._db):
            self._db.execute("INSERT OR REPLACE INTO probe VALUES (1, ?)", (time.time(),))

    def close(self) -> None:
        self._db.close()

    def _count(self, entry: Entry, now: float, changes: _Changes) -> Accepted:
        """Plain feedback only (no id, score or time): nothing to look up, nothing to refuse."""
        minute = floor(now, MINUTE)
        for series, delta in entry.deltas.items():
            changes[series].place((minute, minute), delta)
        return entry.counted()

    def _apply(self, entry: Entry, now: float, changes: _Changes) -> Accepted | Refused:
        if not entry.keyed:
            return self._count(entry, now, changes)
        mine = _Changes()
        accepted, duplicates = self._count(entry, now, mine).accepted, 0
        try:
            # An item is refused before it writes anything: only several need a savepoint.
            with _savepoint(self._db, len(entry.keyed) > 1):
                for index, item in entry.keyed:
                    if self._keyed(index, item, now, mine):
                        accepted += 1
                    else:
                        duplicates += 1
        except _Refusal as refusal:
            return refusal.refused
        changes.merge(mine)
        return Accepted(accepted, duplicates, sorted({*entry.deltas, *mine}))

    def _keyed(self, index: int, item: Feedback | Prediction, now: float, mine: _Changes) -> bool:
        """Apply one item kept whole (an id, a score or a time); False for a repeat."""
        if item.id is None:
            assert isinstance(item, Feedback)
            self._observe(item, now, mine[item.series])
            return True
        row = self._db.execute(
            "SELECT model, version, prediction, actual, predicted_at, from_prediction, score"
            " FROM outcomes WHERE id = ?",
            (item.id,),
        ).fetchone()
        if isinstance(item, Prediction):
            return self._predict(index, item, now, row, mine)
        return self._label(index, item, now, row, mine)

    def _predict(
        self,
        index: int,
        item: Prediction,
        now: float,
        row: tuple[object, ...] | None,
        mine: _Changes,
    ) -> bool:
        if row is not None:
            if tuple(row[:3]) == (item.model, item.version, item.prediction):
                mine[item.series]
                return False
            raise _Refusal(Refused(409, "Conflicting prediction for id", "conflict", index))
        self._db.execute(
            "INSERT INTO outcomes VALUES (?, ?, ?, ?, NULL, ?, ?, ?, 1)",
            (item.id, item.model, item.version, item.prediction, item.score,
             item.timestamp if item.timestamp is not None else now, now),
        )  # fmt: skip
        mine[item.series].predicted += 1
        return True

    def _label(
        self, index: int, item: Feedback, now: float, row: tuple[object, ...] | None, mine: _Changes
    ) -> bool:
        if row is None:
            if item.prediction is None:
                raise _Refusal(Refused(404, "Unknown prediction id", "unknown_id", index))
            self._db.execute(
                "INSERT INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0)",
                (item.id, item.model, item.version, item.prediction, item.actual, item.score,
                 item.timestamp if item.timestamp is not None else now, now),
            )  # fmt: skip
            self._observe(item, now, mine[item.series])
            return True
        model, version, prediction, actual, predicted_at, from_prediction, score = row
        assert isinstance(model, str)
        assert isinstance(version, str)
        assert isinstance(prediction, int)
        assert isinstance(predicted_at, float)
        # An id already stored keeps its series: the feedback's own model and version, which
        # may be mere defaults, do not move it (only a different outcome conflicts).
        if item.prediction is not None and item.prediction != prediction:
            message = "Prediction contradicts the stored prediction for id"
            if actual is not None:
                message = "Conflicting feedback for id"
            raise _Refusal(Refused(409, message, "conflict", index))
        change = mine[model, version]
        if actual is not None:
            if actual != item.actual:
                raise _Refusal(Refused(409, "Conflicting feedback for id", "conflict", index))
            return False
        self._db.execute("UPDATE outcomes SET actual = ? WHERE id = ?", (item.actual, item.id))
        score = item.score if item.score is not None else score
        assert score is None or isinstance(score, float)
        change.outcome(now, predicted_at, (prediction, item.actual, score))
        change.labelled += 1 if from_prediction else 0
        change.observe_delay(now - predicted_at)
        return True

    @staticmethod
    def _observe(item: Feedback, now: float, change: _Change) -> None:
        """A feedback that brings its own prediction: counted at its time, with its score."""
        assert item.prediction is not None
        predicted_at = item.timestamp if item.timestamp is not None else now
        change.outcome(now, predicted_at, (item.prediction, item.actual, item.score))
        if item.timestamp is not None:
            change.observe_delay(now - item.timestamp)

    def _add(self, changes: _Changes, now: float) -> dict[Series, SeriesState]:
        """Add the changes and feed the drift detectors; the touched series' states. Call inside
        the transaction, and ``_committed()`` after it: the delay histograms and the detectors
        are kept in memory as well."""
        rows = []
        self._new_delays = {}
        for series, c in changes.items():
            k = c.counts
            scores = self._lifetime_scores(series, c.scored) if c.scored else None
            rows.append(self._db.execute(
                _ADD + " RETURNING " + _COLUMNS,
                (*series, k.tp, k.tn, k.fp, k.fn, c.predicted, c.labelled, c.expired, c.delay_sum,
                 scores),
            ).fetchone())  # fmt: skip
            buckets.add(self._db, series, c.timed, c.scored)
            if k.total:
                self._watches.observe(series, k, now)
            if c.delays:
                self._db.executemany(_ADD_DELAYS, [(*series, b, n) for b, n in c.delays.items()])
                old = self._delays.get(series, _NO_DELAYS)
                self._new_delays[series] = tuple(n + c.delays.get(b, 0) for b, n in enumerate(old))
        return self._states(rows, {**self._delays, **self._new_delays})

    def _lifetime_scores(
        self, series: Series, scored: Mapping[Moment, list[tuple[float, int]]]
    ) -> bytes:
        """The series' lifetime score histogram with these outcomes, stored form."""
        new = ScoreHistogram.of((pair for pairs in scored.values() for pair in pairs), SCORE_BINS)
        (blob,) = self._db.execute(
            "SELECT scores FROM confusion WHERE model = ? AND version = ?", series
        ).fetchone() or (None,)
        return buckets.encode_scores(new if blob is None else new + buckets.decode_scores(blob))

    def _committed(self) -> None:
        self._delays.update(self._new_delays)
        self._new_delays = {}
        self._watches.committed()

    def _states(
        self, rows: Iterable[Sequence[object]], delays: Mapping[Series, tuple[int, ...]]
    ) -> dict[Series, SeriesState]:
        states = {}
        for model, version, tp, tn, fp, fn, predicted, labelled, expired, delay_sum, scores in rows:
            series = (str(model), str(version))
            states[series] = SeriesState(
                Counts(int(tp), int(tn), int(fp), int(fn)),  # type: ignore[call-overload]
                int(predicted),  # type: ignore[call-overload]
                int(labelled),  # type: ignore[call-overload]
                int(expired),  # type: ignore[call-overload]
                float(delay_sum),  # type: ignore[arg-type]
                delays.get(series, _NO_DELAYS),
                None if scores is None else buckets.decode_scores(scores),  # type: ignore[arg-type]
                self._watches.status(series),
            )
        return states


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN`` ... ``COMMIT``, rolled back if the body raises."""
    db.execute("BEGIN")  # deferred: the only writer never waits for a lock, and it is cheaper
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


@contextmanager
def _savepoint(db: sqlite3.Connection, needed: bool) -> Iterator[None]:
    """Undo the body's writes if it raises (when ``needed``)."""
    if not needed:
        yield
        return
    db.execute("SAVEPOINT entry")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK TO entry")
        db.execute("RELEASE entry")
        raise
    db.execute("RELEASE entry")
