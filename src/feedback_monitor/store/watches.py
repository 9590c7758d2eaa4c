"""The drift detectors in the database: fed inside the store's transactions, so that their state
is always that of the committed counts, before and after a restart, whoever wrote them.

Format: ``drift_state(model, version, state, detections)``, one row per series: the JSON of
``SeriesWatch.state()`` and that of ``{detector: drifts found}`` (BLOBs or bytea of UTF-8);
``drift_events(model, version, detector, at, statistic)``, one row per drift found, ``at`` the
Unix time of the commit that brought the outcomes. Beside them, the outcomes the saved state
does not hold yet, in the order they were fed (see each class): SQLite's
``drift_journal(model, version, seq, tp, tn, fp, fn)``, PostgreSQL's
``drift_inbox(id, model, version, tp, tn, fp, fn, at)``. The saved state, then those outcomes in
order, is always the exact stream of committed outcomes.
"""

import zlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from feedback_monitor.confusion import Counts
from feedback_monitor.drift.base import Status
from feedback_monitor.drift.watch import DETECTORS, SeriesWatch
from feedback_monitor.series import DriftStatus, Series
from feedback_monitor.store import DriftEvent

if TYPE_CHECKING:
    from feedback_monitor.store.sql import Cursor, Database

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
_KEY = "model = ? AND version = ?"
_STATE = f"SELECT state, detections FROM drift_state WHERE {_KEY}"
_STATES = "SELECT model, version, state, detections FROM drift_state"
_decode_detections = msgspec.json.Decoder(dict[str, int]).decode


class _Stored(msgspec.Struct):
    """What a detector's stored state says of its status, read without rebuilding it."""

    status: int = int(Status.STABLE)


_decode_statuses = msgspec.json.Decoder(dict[str, _Stored]).decode
_SAVE = """
    INSERT INTO drift_state (model, version, state, detections) VALUES (?, ?, ?, ?)
    ON CONFLICT (model, version) DO UPDATE SET
        state = excluded.state, detections = excluded.detections
"""
_EVENT = "INSERT INTO drift_events (model, version, detector, at, statistic) VALUES (?, ?, ?, ?, ?)"
_LOCKS = 0x6466  # the first key of the series' advisory locks ("df")
_TRY_LOCK = "SELECT pg_try_advisory_xact_lock(?, ?)"
_INBOX = f"SELECT id, tp, tn, fp, fn, at FROM drift_inbox WHERE {_KEY} ORDER BY id"
_POST = "INSERT INTO drift_inbox (model, version, tp, tn, fp, fn, at) VALUES (?, ?, ?, ?, ?, ?, ?)"
_TAKE = "DELETE FROM drift_inbox WHERE id = ANY(?)"  # PostgreSQL's, the only one with an inbox
_JOURNAL = f"SELECT tp, tn, fp, fn FROM drift_journal WHERE {_KEY} ORDER BY seq"
_NOTE = (
    "INSERT INTO drift_journal (model, version, seq, tp, tn, fp, fn) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_JOURNALS = "SELECT model, version, tp, tn, fp, fn FROM drift_journal ORDER BY model, version, seq"
_CLEAR = f"DELETE FROM drift_journal WHERE {_KEY}"
SAVE_EVERY = 32  # commits of a series between two saves of its detectors' state (SQLite)


class Reads(NamedTuple):
    """What feeding a series reads, sent ahead (``read``) and fetched by ``feed``; None where
    nothing needs reading."""

    lock: "Cursor | None"
    state: "Cursor | None"
    waiting: "Cursor | None"  # the outcomes the saved state lacks


_NOTHING = Reads(None, None, None)


class OwnWatches:
    """The detectors of the only writer (SQLite): kept in memory and fed every commit, so each
    commit answers exact statuses; their state is saved every ``SAVE_EVERY`` commits of a
    series. In between, each commit notes its outcomes in the journal, a row far cheaper to
    write than the state (which cost about 12% of the throughput of ``POST /feedback``). A
    restart, or a transaction rolled back, rebuilds the detectors from the saved state and
    replays the journal; the drifts the replay finds again were recorded when first found.
    """

    def __init__(self) -> None:
        self._live: dict[Series, _Live] = {}
        self._fed: set[Series] = set()  # by the open transaction

    def read(self, db: "Database", series: Series) -> Reads:
        if series in self._live:
            return _NOTHING
        return Reads(None, db.execute(_STATE, series), db.execute(_JOURNAL, series))

    def feed(
        self, db: "Database", series: Series, reads: Reads, counts: Counts, now: float
    ) -> tuple[DriftStatus, ...]:
        """Feed the transaction's outcomes of the series; the statuses and detections it
        leaves."""
        live = self._live.get(series)
        if live is None:
            assert reads.state is not None
            assert reads.waiting is not None
            live = self._restore(series, reads.state.fetchone(), reads.waiting.fetchall())
        if not counts.total:  # nothing to feed: a block of no outcomes would still move them
            return () if live is None else _statuses(live.watch, live.detections)
        if live is None:  # the series' first outcomes
            live = self._live[series] = _Live(SeriesWatch(), {})
        self._fed.add(series)  # before anything changes: a rollback forgets it all
        for detector, statistic in live.observe(counts):
            db.execute(_EVENT, (*series, detector, now, statistic))
        if live.unsaved < SAVE_EVERY:
            db.execute(_NOTE, (*series, live.unsaved, *counts.fields))
        else:
            self._save(db, series, live)
        return _statuses(live.watch, live.detections)

    def flush(self, db: "Database") -> None:
        """Save every state the journal still adds to (before closing: a restart then has
        nothing to replay)."""
        for series, live in sorted(self._live.items()):
            if live.unsaved:
                self._fed.add(series)  # a flush rolled back leaves it to be rebuilt
                self._save(db, series, live)

    def waiting(self, db: "Database") -> list[Series]:
        return []  # nothing is left unfed

    def committed(self) -> None:
        self._fed.clear()

    def rolled_back(self) -> None:
        """Forget what the transaction fed: the next feed rebuilds it from the database."""
        for series in self._fed:
            self._live.pop(series, None)
        self._fed.clear()

    def statuses(self, db: "Database") -> dict[Series, tuple[DriftStatus, ...]]:
        """Each detector's status and how many drifts it found, of every series fed."""
        saved = {(str(m), str(v)): (s, d) for m, v, s, d in db.execute(_STATES).fetchall()}
        journal: dict[Series, list[Any]] = {}
        for model, version, *counts in db.execute(_JOURNALS).fetchall():
            journal.setdefault((str(model), str(version)), []).append(counts)
        statuses = {}
        for series in saved.keys() | journal.keys():
            live = self._live.get(series)
            if live is None and series in journal:
                live = self._restore(series, saved.get(series), journal[series])
            if live is not None:
                statuses[series] = _statuses(live.watch, live.detections)
            else:
                state, counted = saved[series]
                statuses[series] = _stored_statuses(
                    bytes(state), _decode_detections(bytes(counted))
                )
        return statuses

    @property
    def pending(self) -> bool:
        """Whether the journal adds to a saved state (``flush`` would save it)."""
        return any(live.unsaved for live in self._live.values())

    def _restore(self, series: Series, row: Any, journal: Sequence[Any]) -> "_Live | None":
        """The detectors as the database holds them, the saved state then the journal; None
        for a series never fed."""
        if row is None and not journal:
            return None
        watch = SeriesWatch() if row is None else SeriesWatch.from_state(_decode(bytes(row[0])))
        live = _Live(watch, {} if row is None else _decode_detections(bytes(row[1])))
        for tp, tn, fp, fn in journal:
            live.observe(Counts(int(tp), int(tn), int(fp), int(fn)))
        self._live[series] = live
        return live

    def _save(self, db: "Database", series: Series, live: "_Live") -> None:
        db.execute(_SAVE, (*series, _encode(live.watch.state()), _encode(live.detections)))
        db.execute(_CLEAR, series)
        live.unsaved = 0


class _Live:
    """A series' detectors in memory, with the drifts found and the commits not yet saved."""

    __slots__ = ("detections", "unsaved", "watch")

    def __init__(self, watch: SeriesWatch, detections: dict[str, int]) -> None:
        self.watch = watch
        self.detections = detections
        self.unsaved = 0

    def observe(self, counts: Counts) -> list[tuple[str, float]]:
        """Feed one commit's outcomes, counted as not saved yet; the drifts they caused."""
        drifts = self.watch.observe(counts)
        for detector, _ in drifts:
            self.detections[detector] = self.detections.get(detector, 0) + 1
        self.unsaved += 1
        return drifts


class SharedWatches:
    """The detectors of writers that share the database (PostgreSQL replicas).

    A series' detectors read one stream, so one writer at a time feeds them: the one holding the
    series' advisory lock, which nobody waits for (``pg_try_advisory_xact_lock``). A writer that
    does not get it posts its outcomes to the inbox and moves on; the next holder feeds what the
    inbox holds, in the order of the ids, before its own outcomes, and deletes it in the same
    transaction. So every committed outcome is fed once, and state and inbox together always
    hold the exact stream. The statuses a writer answers without the lock are those of the last
    feed.

    Another writer may have fed a series since, so its state is read from the database every
    time; what is kept is only the decoded form of the bytes last seen, to skip decoding them
    again while they are the same.
    """

    def __init__(self) -> None:
        self._decoded: dict[Series, tuple[bytes, SeriesWatch]] = {}
        self._fed: dict[Series, tuple[bytes, SeriesWatch]] = {}  # by the open transaction

    def read(self, db: "Database", series: Series) -> Reads:
        """Send the reads of a series that ``feed`` needs; the lock first, so that the state
        and the inbox read after it are those the last holder committed."""
        lock = db.execute(_TRY_LOCK, (_LOCKS, _lock_key(series)))
        return Reads(lock, db.execute(_STATE, series), db.execute(_INBOX, series))

    def feed(
        self, db: "Database", series: Series, reads: Reads, counts: Counts, now: float
    ) -> tuple[DriftStatus, ...]:
        """Feed the transaction's outcomes of the series (and the inbox's, first, when it holds
        the lock, else post them there); the statuses and detections it leaves."""
        assert reads.lock is not None
        assert reads.state is not None
        assert reads.waiting is not None
        row = reads.state.fetchone()
        state = None if row is None else bytes(row[0])
        detections = {} if row is None else _decode_detections(bytes(row[1]))
        waiting = reads.waiting.fetchall()
        if not reads.lock.fetchone()[0]:
            if counts.total:
                db.execute(_POST, (*series, *counts.fields, now))
            return () if state is None else _stored_statuses(state, detections)
        stream = [(Counts(*map(int, r[1:5])), float(r[5])) for r in waiting]
        stream += [(counts, now)] if counts.total else []
        if not stream:
            return () if state is None else _stored_statuses(state, detections)
        watch = SeriesWatch() if state is None else self._watch(series, state)
        self._decoded.pop(series, None)  # being changed: not to be reused unless committed
        live = _Live(watch, detections)  # (its count of unsaved commits is not used here)
        for delta, at in stream:
            for detector, statistic in live.observe(delta):
                db.execute(_EVENT, (*series, detector, at, statistic))
        if waiting:
            db.execute(_TAKE, ([int(r[0]) for r in waiting],))
        saved = _encode(watch.state())
        db.execute(_SAVE, (*series, saved, _encode(detections)))
        self._fed[series] = (saved, watch)
        return _statuses(watch, detections)

    pending = False  # every feed saves its state

    def flush(self, db: "Database") -> None:
        pass

    def waiting(self, db: "Database") -> list[Series]:
        """The series with outcomes in the inbox."""
        rows = db.execute("SELECT DISTINCT model, version FROM drift_inbox").fetchall()
        return [(str(model), str(version)) for model, version in rows]

    def committed(self) -> None:
        self._decoded |= self._fed
        self._fed = {}

    def rolled_back(self) -> None:
        self._fed = {}

    def statuses(self, db: "Database") -> dict[Series, tuple[DriftStatus, ...]]:
        """Each detector's status and how many drifts it found, of every series."""
        return {
            (model, version): _stored_statuses(bytes(state), _decode_detections(bytes(counted)))
            for model, version, state, counted in db.execute(_STATES).fetchall()
        }

    def _watch(self, series: Series, state: bytes) -> SeriesWatch:
        """The detectors of the stored ``state``, decoded once while it stays the same."""
        fed = self._fed.get(series)
        if fed is not None and fed[0] == state:
            return fed[1]
        known = self._decoded.get(series)
        if known is not None and known[0] == state:
            return known[1]
        watch = SeriesWatch.from_state(_decode(state))
        self._decoded[series] = (state, watch)
        return watch


Watches = OwnWatches | SharedWatches


def events(db: "Database", series: Series, limit: int) -> list[DriftEvent]:
    """The latest drifts found, newest first."""
    rows = db.execute(
        f"SELECT detector, at, statistic FROM drift_events WHERE {_KEY}"
        " ORDER BY at DESC, rowid DESC LIMIT ?",
        (*series, limit),
    )
    return [DriftEvent(str(d), float(at), float(s)) for d, at, s in rows]


def _lock_key(series: Series) -> int:
    """The second key of the series' advisory lock: a stable 32-bit hash (two series that
    share one only take turns)."""
    return zlib.crc32("\0".join(series).encode()) - 2**31


def _stored_statuses(state: bytes, detections: Mapping[str, int]) -> tuple[DriftStatus, ...]:
    """The statuses of a stored state, as ``SeriesWatch.from_state`` would rebuild them (every
    detector of ``DETECTORS``, in order; one the state lacks afresh) at a fraction of the cost."""
    stored = _decode_statuses(state)
    return tuple(
        DriftStatus(name, stored[name].status if name in stored else int(Status.STABLE),
                    detections.get(name, 0))
        for name in DETECTORS
    )  # fmt: skip


def _statuses(watch: SeriesWatch, detections: Mapping[str, int]) -> tuple[DriftStatus, ...]:
    return tuple(
        DriftStatus(detector, status, detections.get(detector, 0))
        for detector, status in watch.statuses().items()
    )
