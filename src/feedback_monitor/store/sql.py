"""The store's logic in SQL that SQLite and PostgreSQL both run; ``sqlite.py`` and
``postgres.py`` bring the connection, the schema and its migrations.

Several writers may share the database (PostgreSQL replicas), so nothing is taken on trust from
an earlier transaction: every state a transaction returns is read inside it, after its own
writes. The counts that only ever grow (``confusion``, ``buckets``, ``label_delays``) are kept
in rows per writer, its ``shard`` (the connector's), and read as their sum: writers add to rows
of their own instead of queueing for one row per series until each other's commit. The drift
detectors, fed one writer at a time, are ``watches.py``'s. Series go in sorted order, so writers
that do share a shard queue up instead of deadlocking. Ids hold through the primary key of
``outcomes``: an INSERT that finds the id taken, or a join whose row changed meanwhile (``...
AND actual IS NULL``), reads the row again and treats it as stored. A transaction that
deadlocks anyway (expiry against writers) is retried whole.

Each series' writes and reads go out before any answer is awaited, and what depends on the
answers after: over PostgreSQL's pipeline a commit waits for two round trips, not one per
statement.

A ``write`` is one transaction for many requests; a refused request leaves no trace and the
others stand (a request of several items with ids, or one under a cap, runs inside a savepoint
of its own; any other single item is refused before it writes anything).

The cap on series is the store's to keep, since only the store sees every writer's series: a
transaction with an entry that may create series (it carries the cap) first takes the series
lock and reads the series stored, and each item that would create one past the cap refuses
its entry. Writers that only add to stored series take no such lock.
"""

import collections
import functools
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from feedback_monitor.confusion import CELL, Counts, cells
from feedback_monitor.records import Feedback, Prediction
from feedback_monitor.scores import ScoreHistogram
from feedback_monitor.series import (
    DELAY_BUCKETS,
    SCORE_BINS,
    DriftStatus,
    Series,
    SeriesState,
    delay_bucket,
)
from feedback_monitor.store import (
    Accepted,
    DriftEvent,
    Entry,
    Point,
    Refused,
    Totals,
    Window,
    buckets,
    watches,
)
from feedback_monitor.store.buckets import Moment, Scores
from feedback_monitor.store.watches import OwnWatches, Reads, SharedWatches, Watches
from feedback_monitor.windows import MINUTE, Span, TimeView, floor

T = TypeVar("T")
log = logging.getLogger(__name__)
ATTEMPTS = 5  # of a transaction that deadlocked or lost a race


class Cursor(Protocol):
    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Database(Protocol):
    """A connection, with ``?`` placeholders."""

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> object: ...


class Connector(Protocol):
    """Where the connections come from, and which failures deserve another attempt."""

    retryable: tuple[type[Exception], ...]
    shared: bool  # other writers may write at the same time
    shard: int  # the rows the transaction in hand adds its counts to

    def transaction(self) -> AbstractContextManager[Database]:
        """A connection inside a transaction: committed at the end, rolled back on error."""

    def lock_ids(self, db: Database, ids: Sequence[str]) -> None:
        """Hold the ids until the transaction ends: writers that share ids then take their
        turns whole, instead of locking rows in each other's way (deadlocks)."""

    def lock_series(self, db: Database) -> None:
        """Hold the right to create series until the transaction ends (taken after the ids):
        writers that may create series take turns, each counting those the others created."""

    def reading(self) -> AbstractContextManager[Database]:
        """A connection for reads."""

    def close(self) -> None: ...


class NewerSchema(RuntimeError):
    """The database was written by a newer version of the service, whose data this one could
    misread (a drift journal it does not replay, say): it is not opened."""


def check_schema(current: int, known: int) -> None:
    if current > known:
        raise NewerSchema(
            f"the database has schema version {current}, newer than this version's {known}:"
            " run the newer version of feedback-monitor, which wrote it"
        )


class Contended(Exception):
    """A row changed under the transaction more often than it should: try it again."""


_ADD = """
    INSERT INTO confusion
        (model, version, shard, tp, tn, fp, fn, predicted, labelled, expired, delay_sum)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (model, version, shard) DO UPDATE SET
        tp = confusion.tp + excluded.tp, tn = confusion.tn + excluded.tn,
        fp = confusion.fp + excluded.fp, fn = confusion.fn + excluded.fn,
        predicted = confusion.predicted + excluded.predicted,
        labelled = confusion.labelled + excluded.labelled,
        expired = confusion.expired + excluded.expired,
        delay_sum = confusion.delay_sum + excluded.delay_sum
"""
_ADD_DELAYS = """
    INSERT INTO label_delays (model, version, bucket, shard, count) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (model, version, bucket, shard) DO UPDATE SET
        count = label_delays.count + excluded.count
"""
_SERIES_KEY = "model = ? AND version = ?"
_SERIES = "SELECT DISTINCT model, version FROM confusion"
_FRESH_ROWS = 512  # outcomes in one INSERT: 4,608 parameters, within both databases' limits
_READ_OUTCOME = (
    "SELECT model, version, prediction, actual, predicted_at, from_prediction, score"
    " FROM outcomes WHERE id = ?"
)
# A label restarts its id's time to live: a retry of a late label stays a repeat for as long.
_JOIN = (
    "UPDATE outcomes SET actual = ?, stored_at = ? WHERE id = ? AND actual IS NULL"
    " RETURNING model, version, prediction, actual, predicted_at, from_prediction, score"
)
_NO_DELAYS = (0,) * (len(DELAY_BUCKETS) + 1)
_NONE = Counts()
_ONE = {outcome: Counts().add(*outcome) for outcome in CELL}
# A series' rows, in shard order so that every reader adds them up in the same order.
_ROWS = (
    "SELECT model, version, shard, tp, tn, fp, fn, predicted, labelled, expired, delay_sum,"
    " scores FROM confusion"
)
_SERIES_ROWS = f"{_ROWS} WHERE {_SERIES_KEY} ORDER BY shard"
_DELAYS = "SELECT model, version, bucket, sum(count) FROM label_delays"
_Row = tuple[Any, ...]


@dataclass
class _Change:
    """What one transaction adds to one series."""

    predicted: int = 0
    labelled: int = 0
    expired: int = 0
    delay_sum: float = 0.0
    delays: dict[int, int] = field(default_factory=dict)
    timed: dict[Moment, Counts] = field(default_factory=dict)  # the counts, placed in time
    scored: dict[Moment, list[tuple[float, int]]] = field(default_factory=dict)

    @property
    def counts(self) -> Counts:
        """All that the transaction counts for the series, wherever it is placed in time."""
        return sum(self.timed.values(), _NONE)

    def place(self, moment: Moment, counts: Counts) -> None:
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


class SQLStore:
    """Confusion counts, predictions and idempotency keys in the connector's database."""

    def __init__(self, connector: Connector) -> None:
        self._connector = connector
        self._watches: Watches = SharedWatches() if connector.shared else OwnWatches()

    def load(self) -> Totals:
        with self._connector.reading() as db:
            rows = db.execute(_ROWS + " ORDER BY model, version, shard").fetchall()
            delays = _delays(db.execute(_DELAYS + " GROUP BY model, version, bucket"))
            statuses = self._watches.statuses(db)
        return {
            series: _state(list(shards), delays.get(series, _NO_DELAYS), statuses.get(series, ()))
            for series, shards in itertools.groupby(rows, key=lambda row: (row[0], row[1]))
        }

    def commit(self, deltas: Mapping[Series, Counts]) -> Totals:
        """Add confusion counts, nothing else: ``write`` with id-less feedback only."""
        _, totals = self.write([Entry(dict(deltas), [])], time.time())
        return totals

    def write(
        self, entries: Sequence[Entry], now: float
    ) -> tuple[list[Accepted | Refused], Totals]:
        """Apply every entry that can be applied, in one transaction; the totals it produced."""

        def body(db: Database) -> tuple[list[Accepted | Refused], Totals]:
            changes = _Changes()
            if self._connector.shared and (ids := _ids(entries)):
                self._connector.lock_ids(db, ids)
            existing: set[Series] = set()  # the series stored, read if an entry may create some
            if any(entry.cap is not None for entry in entries):
                self._connector.lock_series(db)
                existing = {(str(m), str(v)) for m, v in db.execute(_SERIES)}
            fresh = _store_fresh(db, entries, now)
            stored = _count_fresh([entries[number] for number in fresh], now, changes)
            outcomes = [
                stored[entry.keyed[0][1].series] if number in fresh
                else self._apply(db, entry, now, changes, existing)
                for number, entry in enumerate(entries)
            ]  # fmt: skip
            return outcomes, self._add(db, changes, now)

        return self._transact(body)

    def expire(self, before: float, cutoffs: Mapping[int, float] | None = None) -> Totals:
        """Drop predictions stored before ``before`` and still unlabelled, and older ids; and
        the time buckets of each resolution older than its cutoff. Feed the drift detectors
        whatever waits in their inbox, for series nobody writes to any more."""

        def body(db: Database) -> Totals:
            changes = _Changes()
            buckets.drop_before(db, cutoffs or {})
            # What this transaction deleted itself: a concurrent expiry counts none twice.
            # (SQLite 3.40 misjudges expressions in the RETURNING of a WITHOUT ROWID table.)
            gone = db.execute(
                "DELETE FROM outcomes WHERE stored_at < ?"
                " RETURNING model, version, actual, from_prediction",
                (before,),
            )
            for model, version, actual, from_prediction in gone.fetchall():
                changes[model, version].expired += actual is None and from_prediction == 1
            touched = {s: c for s, c in changes.items() if c.expired}
            for series in self._watches.waiting(db):
                touched.setdefault(series, _Change())
            return self._add(db, touched, time.time())

        return self._transact(body)

    def window(self, series: Series, view: TimeView, spans: Sequence[Span]) -> Window:
        """The counts and scores of a window, as committed."""
        with self._connector.reading() as db:
            return buckets.window(db, series, view, spans)

    def points(self, series: Series, view: TimeView, span: Span, step: int) -> list[Point]:
        """The counts per ``step`` seconds of a span, where there are any."""
        with self._connector.reading() as db:
            return buckets.points(db, series, view, span, step)

    def events(self, series: Series, limit: int) -> list[DriftEvent]:
        """The latest drifts found in the series, newest first."""
        with self._connector.reading() as db:
            return watches.events(db, series, limit)

    def ping(self) -> None:
        """A real write: a full disk or a lost connection fails here, not in the next commit."""
        with self._connector.transaction() as db:
            db.execute(
                "INSERT INTO probe VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                (time.time(),),
            )

    def close(self) -> None:
        """Save the detectors' states the drift journal adds to (a restart then has nothing to
        replay), and let go of the database."""
        try:
            if self._watches.pending:
                self._transact(self._watches.flush)
        except Exception:  # nothing is lost: the journal still holds it
            log.warning("saving the drift detectors at close failed", exc_info=True)
        finally:
            self._connector.close()

    def _transact(self, body: Callable[[Database], T]) -> T:
        """Run ``body`` in a transaction, again while it fails in a way worth retrying."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with self._connector.transaction() as db:
                    result = body(db)
            except self._connector.retryable:
                self._watches.rolled_back()
                if attempt == ATTEMPTS:
                    raise
                continue
            except BaseException:
                self._watches.rolled_back()
                raise
            self._watches.committed()
            return result
        raise AssertionError("unreachable")

    def _count(self, entry: Entry, now: float, changes: _Changes) -> Accepted:
        """Plain feedback only (no id, score or time): nothing to look up, nothing to refuse."""
        minute = floor(now, MINUTE)
        for series, delta in entry.deltas.items():
            changes[series].place((minute, minute), delta)
        return entry.counted()

    def _apply(
        self,
        db: Database,
        entry: Entry,
        now: float,
        changes: _Changes,
        existing: set[Series],
    ) -> Accepted | Refused:
        if not entry.keyed and entry.cap is None:
            return self._count(entry, now, changes)
        mine = _Changes()
        capped = None if entry.cap is None else _Capped(entry.cap, entry.firsts, existing)
        try:
            # An item is refused before it writes anything: only several need a savepoint, or
            # one that may be refused after it wrote, for the series it would create.
            with _savepoint(db, len(entry.keyed) > 1 or capped is not None):
                accepted, duplicates = self._items(db, entry.keyed, now, mine, capped)
        except _Refusal as refusal:
            return refusal.refused
        if capped is not None:
            capped.keep()
        counted = self._count(entry, now, mine)  # after the items: see ``_items``
        changes.merge(mine)
        return Accepted(counted.accepted + accepted, duplicates, sorted(mine))

    def _items(
        self,
        db: Database,
        keyed: Sequence[tuple[int, Feedback | Prediction]],
        now: float,
        mine: _Changes,
        capped: "_Capped | None",
    ) -> tuple[int, int]:
        """Apply an entry's keyed items in order, under its cap if it has one; how many were
        applied and how many were repeats."""
        accepted = duplicates = 0
        # A batch's items at once, if it is under no cap: a single item is faster its own way.
        at_once = capped is None and len(keyed) > 1
        alone = _apply_alone(db, keyed, now, mine) if at_once else set()
        for index, item in keyed:
            if index in alone:
                accepted += 1
                continue
            if capped is not None:
                capped.counted_before(index)
            if self._keyed(db, index, item, now, mine):
                accepted += 1
            else:
                duplicates += 1
            if capped is not None:
                # An item touches one series, in ``mine`` last if it is new there: ``mine``
                # holds no counted series yet.
                capped.admit(index, next(reversed(mine)))
        if capped is not None:
            capped.counted_before(None)
        return accepted, duplicates

    def _keyed(
        self, db: Database, index: int, item: Feedback | Prediction, now: float, mine: _Changes
    ) -> bool:
        """Apply one item kept whole (an id, a score or a time); False for a repeat."""
        if item.id is None:
            assert isinstance(item, Feedback)
            _observe(item, now, mine[item.series])
            return True
        if isinstance(item, Prediction):
            return _predict(db, index, item, now, mine)
        for _ in range(ATTEMPTS):  # each pass sees a row another writer changed meanwhile
            joined = _label(db, index, item, now, mine)
            if joined is not None:
                return joined
        raise Contended(item.id)

    def _add(self, db: Database, changes: Mapping[Series, _Change], now: float) -> Totals:
        """Add the changes and feed the drift detectors; the touched series' states."""
        sent = [(series, c, self._send(db, series, c)) for series, c in sorted(changes.items())]
        return {series: self._settle(db, series, c, reads, now) for series, c, reads in sent}

    def _send(self, db: Database, series: Series, c: _Change) -> "_Reads":
        """Add a series' changes to its rows of the connector's shard, and send the reads of
        what it holds then (their answers are not awaited here)."""
        k, shard = c.counts, self._connector.shard
        db.execute(_ADD, (*series, shard, k.tp, k.tn, k.fp, k.fn, c.predicted, c.labelled,
                          c.expired, c.delay_sum))  # fmt: skip
        scores = buckets.add(db, series, shard, c.timed, c.scored)
        if c.delays:
            db.executemany(_ADD_DELAYS, [(*series, b, shard, n) for b, n in c.delays.items()])
        return _Reads(
            k,
            db.execute(_SERIES_ROWS, series),
            db.execute(_DELAYS + f" WHERE {_SERIES_KEY} GROUP BY model, version, bucket", series),
            scores,
            self._watches.read(db, series),
        )

    def _settle(
        self, db: Database, series: Series, c: _Change, reads: "_Reads", now: float
    ) -> SeriesState:
        """What depends on the answers: score histograms merged, detectors fed; the state."""
        rows = reads.rows.fetchall()
        if c.scored:  # its own row is locked by the transaction's UPSERT
            shard = self._connector.shard
            rows = [_add_lifetime_scores(db, row, c.scored) if row[2] == shard else row
                    for row in rows]  # fmt: skip
        if reads.scores is not None:
            reads.scores.merge(db)
        drift = self._watches.feed(db, series, reads.watch, reads.counts, now)
        delays = _delays(reads.delays.fetchall()).get(series, _NO_DELAYS)
        return _state(rows, delays, drift)


class _Capped:
    """An entry's series under its cap, in item order: ``stored`` are those stored (read under
    the lock that has writers which may create series take turns) and created by the
    transaction's entries before; the entry's keyed items add theirs as they are applied, its
    counted series at their first item."""

    def __init__(self, cap: int, firsts: Iterable[tuple[int, Series]], stored: set[Series]) -> None:
        self._cap, self._stored = cap, stored
        self._firsts = collections.deque(firsts)
        self._created: set[Series] = set()

    def counted_before(self, index: int | None) -> None:
        """Admit the counted series whose first item comes before ``index`` (None: all)."""
        while self._firsts and (index is None or self._firsts[0][0] < index):
            self.admit(*self._firsts.popleft())

    def admit(self, index: int, series: Series) -> None:
        """The item at ``index`` touches ``series``: refuse it if that creates one past the cap."""
        if series in self._stored or series in self._created:
            return
        if len(self._stored) + len(self._created) >= self._cap:
            raise _Refusal(Refused(422, "Too many series", "series_cap", index))
        self._created.add(series)

    def keep(self) -> None:
        """The entry is applied: its series are stored, for the entries after it."""
        self._stored |= self._created


@dataclass
class _Reads:
    """The reads a series' changes sent, answered by the time they are fetched; and the counts
    the changes added (summed once)."""

    counts: Counts
    rows: Cursor  # of its confusion rows, every shard's
    delays: Cursor
    scores: Scores | None
    watch: Reads


def _state(
    rows: Sequence[Sequence[Any]], delays: tuple[int, ...], drift: tuple[DriftStatus, ...]
) -> SeriesState:
    """A series' state: the sum of its confusion rows (in shard order)."""
    tp = tn = fp = fn = predicted = labelled = expired = 0
    delay_sum = 0.0
    histograms = []
    for row in rows:
        tp, tn, fp, fn = tp + int(row[3]), tn + int(row[4]), fp + int(row[5]), fn + int(row[6])
        predicted, labelled = predicted + int(row[7]), labelled + int(row[8])
        expired, delay_sum = expired + int(row[9]), delay_sum + float(row[10])
        if row[11] is not None:
            histograms.append(buckets.decode_scores(bytes(row[11])))
    scores = None
    if histograms:  # a single one needs no adding up
        scores = histograms[0] if len(histograms) == 1 else ScoreHistogram.combined(histograms)
    counts = Counts(tp, tn, fp, fn)
    return SeriesState(counts, predicted, labelled, expired, delay_sum, delays, scores, drift)


def _ids(entries: Sequence[Entry]) -> list[str]:
    """Every id the entries name."""
    return list({item.id for entry in entries for _, item in entry.keyed if item.id is not None})


def _store_fresh(db: Database, entries: Sequence[Entry], now: float) -> set[int]:
    """Store, in one statement per ``_parts``, the predictions and the feedback with their own
    prediction that come alone, with an id no other item of the transaction names (most
    traffic with ids); the numbers of the entries whose id was new. A taken id is left to
    ``_predict`` or ``_label``, item by item."""
    named = collections.Counter(item.id for entry in entries for _, item in entry.keyed)
    rows: list[tuple[Any, ...]] = []
    owners: dict[str, int] = {}
    for number, entry in enumerate(entries):
        if len(entry.keyed) != 1 or entry.deltas or entry.cap is not None:
            continue
        item = entry.keyed[0][1]
        if item.id is not None and item.prediction is not None and named[item.id] == 1:
            rows.append(_outcome_row(item, now))
            owners[item.id] = number
    return {owners[key] for key in _insert_new(db, rows)}


def _apply_alone(
    db: Database, keyed: Sequence[tuple[int, Feedback | Prediction]], now: float, mine: _Changes
) -> set[int]:
    """Apply at once (a statement per ``_parts``) an entry's items whose id none of its
    other items names: store those that bring their prediction under a new id, and join those
    without one to the prediction waiting under their id. The indexes of the items applied;
    the rest (a repeat, a conflict, an unknown id) is left to ``_keyed``, item by item. A batch
    of 10,000 took 10,000 statements, or 20,000 for labels."""
    named = collections.Counter(item.id for _, item in keyed)
    alone = [(i, item.id, item) for i, item in keyed if item.id is not None and named[item.id] == 1]
    new = [(i, item) for i, _, item in alone if item.prediction is not None]
    labels = [
        (i, key, item)
        for i, key, item in alone
        if isinstance(item, Feedback) and item.prediction is None
    ]
    stored = _insert_new(db, [_outcome_row(item, now) for _, item in new])
    fresh = [(index, item) for index, item in new if item.id in stored]
    _count_stored([item for _, item in fresh], now, mine)
    applied = {index for index, _ in fresh}
    joined = _join_waiting(db, [(key, item.actual) for _, key, item in labels], now)
    for index, key, item in labels:
        if (row := joined.get(key)) is not None:
            applied.add(index)
            _join(item, now, row, mine)
    return applied


def _insert_new(db: Database, rows: Sequence[tuple[Any, ...]]) -> set[str]:
    """Store these outcomes, a statement per ``_parts``; the ids that were new."""
    stored: set[str] = set()
    for chunk in _parts(rows):
        values = [value for row in chunk for value in row]
        stored.update(str(i) for (i,) in db.execute(_insert_outcomes(len(chunk)), values))
    return stored


def _join_waiting(db: Database, labels: Sequence[tuple[str, int]], now: float) -> dict[str, _Row]:
    """Label the predictions waiting under these ids, a statement per ``_parts``; each
    joined row by its id, as ``_JOIN`` answers it."""
    joined: dict[str, _Row] = {}
    for chunk in _parts(labels):
        values = [*(value for label in chunk for value in label), now]
        joined.update((str(row[0]), row[1:]) for row in db.execute(_join_many(len(chunk)), values))
    return joined


def _count_fresh(entries: Iterable[Entry], now: float, changes: _Changes) -> dict[Series, Accepted]:
    """Count what the entries ``_store_fresh`` stored; the outcome of such an entry, per
    series."""
    _count_stored([entry.keyed[0][1] for entry in entries], now, changes)
    return {series: Accepted(1, 0, [series]) for series in changes}


def _count_stored(items: Iterable[Feedback | Prediction], now: float, changes: _Changes) -> None:
    """Count items just stored under new ids, each with its prediction: the predictions, and
    the feedback's alike outcomes at once (those of one series, placed now, without a score)."""
    alike: collections.Counter[tuple[str, str, int, int]] = collections.Counter()
    for item in items:
        assert item.prediction is not None  # only such items are stored whole at once
        if isinstance(item, Prediction):
            changes[item.series].predicted += 1
        elif item.timestamp is None and item.score is None:
            alike[item.model, item.version, item.prediction, item.actual] += 1
        else:
            _observe(item, now, changes[item.series])
    minute = floor(now, MINUTE)
    for series, counts in cells(alike).items():
        changes[series].place((minute, minute), counts)


def _outcome_row(item: Feedback | Prediction, now: float) -> tuple[Any, ...]:
    """The ``outcomes`` row of an item stored whole; a prediction's waits for its label."""
    stamp = item.timestamp if item.timestamp is not None else now
    actual, from_prediction = (None, 1) if isinstance(item, Prediction) else (item.actual, 0)
    return (item.id, item.model, item.version, item.prediction, actual, item.score, stamp, now,
            from_prediction)  # fmt: skip


@functools.cache
def _insert_outcomes(rows: int) -> str:
    """The INSERT of ``rows`` outcomes, answering the ids it stored (not those taken)."""
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)
    return f"INSERT INTO outcomes VALUES {values} ON CONFLICT (id) DO NOTHING RETURNING id"


def _parts(rows: Sequence[T]) -> Iterator[Sequence[T]]:
    """``rows`` in few sizes of statement: psycopg keeps the last 100 it sent prepared on
    PostgreSQL, whose plans take 1 to 2 KB a row, so many rows come in parts of ``_FRESH_ROWS``
    and the powers of two below; up to 64 (a commit's single records: small plans) at once."""
    start = 0
    while start < len(rows):
        left = len(rows) - start
        size = left if left <= 64 else min(_FRESH_ROWS, 1 << (left.bit_length() - 1))
        yield rows[start : start + size]
        start += size


@functools.cache
def _join_many(rows: int) -> str:
    """``_JOIN`` for ``rows`` labels, answering each joined row's id first."""
    values = ", ".join(["(?, CAST(? AS INTEGER))"] * rows)
    return (
        f"WITH labels (id, actual) AS (VALUES {values}) UPDATE outcomes"
        " SET actual = labels.actual, stored_at = ? FROM labels"
        " WHERE outcomes.id = labels.id AND outcomes.actual IS NULL RETURNING outcomes.id,"
        " model, version, prediction, outcomes.actual, predicted_at, from_prediction, score"
    )


def _predict(db: Database, index: int, item: Prediction, now: float, mine: _Changes) -> bool:
    """Store a prediction by its id; a repeat of one stored (same model, version, prediction
    and, if it gives one, score) is no change, another a 409."""
    if db.execute(_insert_outcomes(1), _outcome_row(item, now)).fetchone() is not None:
        mine[item.series].predicted += 1
        return True
    stored = db.execute(_READ_OUTCOME, (item.id,)).fetchone()
    if stored is None:  # taken and deleted since, by other writers
        raise Contended(item.id)
    model, version, prediction, *_, score = stored
    # A repeat's score only if it gives one, and never its time (a retry without one gets the
    # server's clock): what it leaves out, the first gave; the first's stays.
    same_score = item.score is None or item.score == score
    if (model, version, prediction) == (*item.series, item.prediction) and same_score:
        mine[item.series]
        return False
    raise _Refusal(Refused(409, "Conflicting prediction for id", "conflict", index))


def _label(db: Database, index: int, item: Feedback, now: float, mine: _Changes) -> bool | None:
    """Join a feedback to the prediction stored under its id, or store it whole; False for a
    repeat, None when another writer changed the row meanwhile (read it again)."""
    # With its own prediction, a new id (the usual case) takes one statement.
    inserted = (
        item.prediction is not None
        and db.execute(_insert_outcomes(1), _outcome_row(item, now)).fetchone()
    )
    if inserted:
        _observe(item, now, mine[item.series])
        return True
    stored = db.execute(_READ_OUTCOME, (item.id,)).fetchone()
    if stored is None:
        if item.prediction is None:
            raise _Refusal(Refused(404, "Unknown prediction id", "unknown_id", index))
        return None  # taken, then deleted by another writer
    _check(index, item, stored)
    if stored[3] is not None:
        mine[str(stored[0]), str(stored[1])]  # a repeat still answers its series' totals
        return False
    joined = db.execute(_JOIN, (item.actual, now, item.id)).fetchone()
    if joined is None:
        return None
    _join(item, now, joined, mine)
    return True


def _check(index: int, item: Feedback, stored: _Row) -> None:
    """Refuse a feedback that contradicts what is stored under its id. An id already stored
    keeps its series: the feedback's own model and version, which may be mere defaults, do not
    move it (only a different outcome conflicts)."""
    prediction, actual = stored[2], stored[3]
    if item.prediction is not None and item.prediction != prediction:
        message = "Prediction contradicts the stored prediction for id"
        if actual is not None:
            message = "Conflicting feedback for id"
        raise _Refusal(Refused(409, message, "conflict", index))
    if actual is not None and actual != item.actual:
        raise _Refusal(Refused(409, "Conflicting feedback for id", "conflict", index))


def _join(item: Feedback, now: float, joined: _Row, mine: _Changes) -> None:
    """Count a label under its stored prediction, with that prediction's time and score."""
    model, version, prediction, _, predicted_at, from_prediction, score = joined
    predicted_at = float(predicted_at)
    score = item.score if item.score is not None else score
    change = mine[str(model), str(version)]
    change.outcome(now, predicted_at, (int(prediction), item.actual, score))
    change.labelled += 1 if from_prediction else 0
    change.observe_delay(now - predicted_at)


def _observe(item: Feedback, now: float, change: _Change) -> None:
    """A feedback that brings its own prediction: counted at its time, with its score."""
    assert item.prediction is not None
    predicted_at = item.timestamp if item.timestamp is not None else now
    change.outcome(now, predicted_at, (item.prediction, item.actual, item.score))
    if item.timestamp is not None:
        change.observe_delay(now - item.timestamp)


def _add_lifetime_scores(
    db: Database, row: Sequence[Any], scored: Mapping[Moment, list[tuple[float, int]]]
) -> _Row:
    """Merge the outcomes into the lifetime score histogram of a confusion row; the row after."""
    new = ScoreHistogram.of((pair for pairs in scored.values() for pair in pairs), SCORE_BINS)
    blob = row[11]
    merged = buckets.encode_scores(new if blob is None else new + buckets.decode_scores(blob))
    db.execute(f"UPDATE confusion SET scores = ? WHERE {_SERIES_KEY} AND shard = ?",
               (merged, *row[:3]))  # fmt: skip
    return (*row[:11], merged)


def _delays(rows: Iterable[Sequence[Any]]) -> dict[Series, tuple[int, ...]]:
    """Label-delay histograms from rows of (model, version, bucket, count)."""
    delays: dict[Series, list[int]] = {}
    for model, version, bucket, count in rows:
        delays.setdefault((str(model), str(version)), list(_NO_DELAYS))[bucket] = int(count)
    return {key: tuple(counts) for key, counts in delays.items()}


@contextmanager
def _savepoint(db: Database, needed: bool) -> Iterator[None]:
    """Undo the body's writes if it refuses the entry (when ``needed``). Anything else raised
    ends the whole transaction, which is rolled back (and retried, after a deadlock): undoing
    to the savepoint in an aborted PostgreSQL transaction would only fail in its place."""
    if not needed:
        yield
        return
    db.execute("SAVEPOINT entry")
    try:
        yield
    except _Refusal:
        db.execute("ROLLBACK TO SAVEPOINT entry")
        db.execute("RELEASE SAVEPOINT entry")
        raise
    db.execute("RELEASE SAVEPOINT entry")
