"""The drift detectors in the database: fed inside the store's transactions, so that their state
is always that of the committed counts, before and after a restart, whoever wrote them.

Format: ``drift_state(model, version, state, detections)``, one row per series: the JSON of
``SeriesWatch.state()`` and that of ``{detector: drifts found}`` (BLOBs or bytea of UTF-8);
``drift_events(model, version, detector, at, statistic)``, one row per drift found, ``at`` the
Unix time of the commit that brought the outcomes; and where several writers share the
database (PostgreSQL), ``drift_inbox(id, model, version, tp, tn, fp, fn, at)``: outcomes
committed while another writer was feeding the series, waiting for the next feed.

A series' detectors read one stream, so one writer at a time feeds them: the one holding the
series' advisory lock, which nobody waits for (``pg_try_advisory_xact_lock``). A writer that
does not get it posts its outcomes to the inbox and moves on; the next holder feeds what the
inbox holds, in the order of the ids, before its own outcomes, and deletes it in the same
transaction. So every committed outcome is fed once, and state and inbox together always hold
the exact stream. The statuses a writer answers without the lock are those of the last feed.
"""

import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

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


class Reads(NamedTuple):
    """What feeding a series reads, sent ahead (``Watches.read``) and fetched by ``feed``."""

    lock: "Cursor | None"  # None: the only writer, who always feeds
    state: "Cursor"
    inbox: "Cursor | None"


class Watches:
    """Every series' detectors, read in the transaction that feeds them and saved with it.

    Another writer may have fed a series since, so its state is read from the database every
    time; what is kept is only the decoded form of the bytes last seen, to skip decoding them
    again while they are the same.
    """

    def __init__(self, shared: bool = False) -> None:
        self._shared = shared  # other writers: the lock and the inbox are in use
        self._decoded: dict[Series, tuple[bytes, SeriesWatch]] = {}
        self._fed: dict[Series, tuple[bytes, SeriesWatch]] = {}  # by the open transaction

    def read(self, db: "Database", series: Series) -> Reads:
        """Send the reads of a series that ``feed`` needs; the lock first, so that the state
        and the inbox read after it are those the last holder committed."""
        lock = db.execute(_TRY_LOCK, (_LOCKS, _lock_key(series))) if self._shared else None
        state = db.execute(f"SELECT state, detections FROM drift_state WHERE {_KEY}", series)
        inbox = db.execute(_INBOX, series) if self._shared else None
        return Reads(lock, state, inbox)

    def feed(
        self, db: "Database", series: Series, reads: Reads, counts: Counts, now: float
    ) -> tuple[DriftStatus, ...]:
        """Feed the transaction's outcomes of the series (and the inbox's, first, when it holds
        the lock, else post them there); the statuses and detections it leaves."""
        row = reads.state.fetchone()
        state = None if row is None else bytes(row[0])
        detections = {} if row is None else _decode_detections(bytes(row[1]))
        waiting = [] if reads.inbox is None else reads.inbox.fetchall()
        if reads.lock is not None and not reads.lock.fetchone()[0]:
            if counts.total:
                db.execute(_POST, (*series, *counts.fields, now))
            return () if state is None else _stored_statuses(state, detections)
        stream = [(Counts(*map(int, r[1:5])), float(r[5])) for r in waiting]
        stream += [(counts, now)] if counts.total else []
        if not stream:
            return () if state is None else _stored_statuses(state, detections)
        watch = SeriesWatch() if state is None else self._watch(series, state)
        self._decoded.pop(series, None)  # being changed: not to be reused unless committed
        for delta, at in stream:
            for detector, statistic in watch.observe(delta):
                db.execute(_EVENT, (*series, detector, at, statistic))
                detections[detector] = detections.get(detector, 0) + 1
        if waiting:
            db.execute(_TAKE, ([int(r[0]) for r in waiting],))
        saved = _encode(watch.state())
        db.execute(_SAVE, (*series, saved, _encode(detections)))
        self._fed[series] = (saved, watch)
        return _statuses(watch, detections)

    def waiting(self, db: "Database") -> list[Series]:
        """The series with outcomes in the inbox."""
        if not self._shared:
            return []
        rows = db.execute("SELECT DISTINCT model, version FROM drift_inbox").fetchall()
        return [(str(model), str(version)) for model, version in rows]

    def committed(self) -> None:
        self._decoded |= self._fed
        self._fed = {}

    def rolled_back(self) -> None:
        self._fed = {}

    def statuses(self, db: "Database") -> dict[Series, tuple[DriftStatus, ...]]:
        """Each detector's status and how many drifts it found, of every series."""
        rows = db.execute("SELECT model, version, state, detections FROM drift_state").fetchall()
        return {
            (model, version): _stored_statuses(bytes(state), _decode_detections(bytes(counted)))
            for model, version, state, counted in rows
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

    def events(self, db: "Database", series: Series, limit: int) -> list[DriftEvent]:
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
