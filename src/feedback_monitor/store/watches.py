"""The drift detectors in the database: fed inside the store's transactions, so that their state
is always that of the committed counts, before and after a restart, whoever wrote them.

Format: ``drift_state(model, version, state)``, one row per series: the JSON of
``SeriesWatch.state()`` (a BLOB or bytea of UTF-8); ``drift_events(model, version, detector, at,
statistic)``, one row per drift found, ``at`` the commit's Unix time.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING

import msgspec

from feedback_monitor.confusion import Counts
from feedback_monitor.drift.watch import SeriesWatch
from feedback_monitor.series import DriftStatus, Series
from feedback_monitor.store import DriftEvent

if TYPE_CHECKING:
    from feedback_monitor.store.sql import Database

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
_KEY = "model = ? AND version = ?"
_SAVE = """
    INSERT INTO drift_state VALUES (?, ?, ?)
    ON CONFLICT (model, version) DO UPDATE SET state = excluded.state
"""
_EVENT = "INSERT INTO drift_events (model, version, detector, at, statistic) VALUES (?, ?, ?, ?, ?)"
_DETECTIONS = "SELECT model, version, detector, count(*) FROM drift_events"


class Watches:
    """Every series' detectors, read in the transaction that feeds them and saved with it.

    Another writer may have fed a series since, so its state is read from the database every
    time; what is kept is only the decoded form of the bytes last seen, to skip decoding them
    again while they are the same.
    """

    def __init__(self) -> None:
        self._decoded: dict[Series, tuple[bytes, SeriesWatch]] = {}
        self._fed: dict[Series, tuple[bytes, SeriesWatch]] = {}  # by the open transaction

    def observe(self, db: "Database", series: Series, counts: Counts, now: float) -> None:
        """Feed one transaction's outcomes of a series whose confusion row it holds locked."""
        row = db.execute(f"SELECT state FROM drift_state WHERE {_KEY}", series).fetchone()
        watch = SeriesWatch() if row is None else self._watch(series, row[0])
        self._decoded.pop(series, None)  # being changed: not to be reused unless committed
        for detector, statistic in watch.observe(counts):
            db.execute(_EVENT, (*series, detector, now, statistic))
        state = _encode(watch.state())
        db.execute(_SAVE, (*series, state))
        self._fed[series] = (state, watch)

    def committed(self) -> None:
        self._decoded |= self._fed
        self._fed = {}

    def rolled_back(self) -> None:
        self._fed = {}

    def statuses(
        self, db: "Database", series: Series | None
    ) -> dict[Series, tuple[DriftStatus, ...]]:
        """Each detector's status and how many drifts it found, of one series or of all, as
        the transaction sees them."""
        if series is None:
            states = db.execute("SELECT model, version, state FROM drift_state").fetchall()
            counted = db.execute(_DETECTIONS + " GROUP BY 1, 2, 3").fetchall()
        else:
            states = self._stored(db, series)
            counted = db.execute(_DETECTIONS + f" WHERE {_KEY} GROUP BY 1, 2, 3", series).fetchall()
        detections = {(m, v, d): int(n) for m, v, d, n in counted}
        return {
            (model, version): _statuses(
                (model, version), self._watch((model, version), state), detections
            )
            for model, version, state in states
        }

    def _stored(self, db: "Database", series: Series) -> list[tuple[str, str, bytes]]:
        """The series' stored state; the one this transaction saved is not read back."""
        if series in self._fed:
            return [(*series, self._fed[series][0])]
        rows = db.execute(f"SELECT model, version, state FROM drift_state WHERE {_KEY}", series)
        return [(str(model), str(version), bytes(state)) for model, version, state in rows]

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


def _statuses(
    series: Series, watch: SeriesWatch, detections: Mapping[tuple[str, str, str], int]
) -> tuple[DriftStatus, ...]:
    return tuple(
        DriftStatus(detector, status, detections.get((*series, detector), 0))
        for detector, status in watch.statuses().items()
    )
