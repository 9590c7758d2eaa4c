"""The drift detectors in SQLite: fed inside the store's transactions, so that their state is
always that of the committed counts, before and after a restart.

Format: ``drift_state(model, version, state)``, one row per series: the JSON of
``SeriesWatch.state()`` (a BLOB of UTF-8); ``drift_events(model, version, detector, at,
statistic)``, one row per drift found, ``at`` the commit's Unix time.
"""

import sqlite3

import msgspec

from feedback_monitor.confusion import Counts
from feedback_monitor.drift.watch import SeriesWatch
from feedback_monitor.series import DriftStatus, Series
from feedback_monitor.store import DriftEvent

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
_SAVE = """
    INSERT INTO drift_state VALUES (?, ?, ?)
    ON CONFLICT (model, version) DO UPDATE SET state = excluded.state
"""


class Watches:
    """Every series' detectors, kept in memory and saved with each commit that feeds them."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._watches = {
            (model, version): SeriesWatch.from_state(_decode(state))
            for model, version, state in db.execute("SELECT * FROM drift_state")
        }
        self._detections = _detections(db)
        self._fed: set[Series] = set()

    def observe(self, series: Series, counts: Counts, now: float) -> None:
        """Feed one transaction's outcomes of a series; call inside the transaction."""
        watch = self._watches.setdefault(series, SeriesWatch())
        self._fed.add(series)
        for detector, statistic in watch.observe(counts):
            event = (*series, detector, now, statistic)
            self._db.execute("INSERT INTO drift_events VALUES (?, ?, ?, ?, ?)", event)
            key = (*series, detector)
            self._detections[key] = self._detections.get(key, 0) + 1
        self._db.execute(_SAVE, (*series, _encode(watch.state())))

    def committed(self) -> None:
        self._fed.clear()

    def rolled_back(self) -> None:
        """The transaction failed: what it fed is forgotten, from the committed rows again."""
        for series in self._fed:
            row = self._db.execute(
                "SELECT state FROM drift_state WHERE model = ? AND version = ?", series
            ).fetchone()
            if row is None:
                self._watches.pop(series, None)
            else:
                self._watches[series] = SeriesWatch.from_state(_decode(row[0]))
        self._detections = _detections(self._db)
        self._fed.clear()

    def status(self, series: Series) -> tuple[DriftStatus, ...]:
        """Each detector's status and how many drifts it found, as committed."""
        watch = self._watches.get(series)
        if watch is None:
            return ()
        return tuple(
            DriftStatus(detector, status, self._detections.get((*series, detector), 0))
            for detector, status in watch.statuses().items()
        )

    def events(self, series: Series, limit: int) -> list[DriftEvent]:
        """The latest drifts found, newest first."""
        rows = self._db.execute(
            "SELECT detector, at, statistic FROM drift_events WHERE model = ? AND version = ?"
            " ORDER BY at DESC, rowid DESC LIMIT ?",
            (*series, limit),
        )
        return [DriftEvent(*row) for row in rows]


def _detections(db: sqlite3.Connection) -> dict[tuple[str, str, str], int]:
    """How many drifts each detector of each series found."""
    return {
        (model, version, detector): count
        for model, version, detector, count in db.execute(
            "SELECT model, version, detector, count(*) FROM drift_events GROUP BY 1, 2, 3"
        )
    }
