"""The embedded default store: one SQLite file in WAL mode with ``synchronous=FULL``.

Format (``PRAGMA user_version`` is the schema version, migrated forward at open):

- ``confusion(model, version, tp, tn, fp, fn)``: one row per series, the committed counts.

A commit is one transaction; with ``synchronous=FULL`` the WAL is fsynced
before ``COMMIT`` returns, so whatever a caller acknowledges after ``commit()`` survives a crash.
"""

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from feedback_monitor.confusion import Counts
from feedback_monitor.store import Series

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
    ) WITHOUT ROWID
    """,
)

_UPSERT = """
    INSERT INTO confusion (model, version, tp, tn, fp, fn) VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (model, version) DO UPDATE SET
        tp = tp + excluded.tp, tn = tn + excluded.tn,
        fp = fp + excluded.fp, fn = fn + excluded.fn
    RETURNING tp, tn, fp, fn
"""


class SQLiteStore:
    """Confusion counts in ``<data_dir>/feedback.sqlite3``."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / FILENAME
        # Autocommit mode: transactions are opened and closed explicitly below.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # One writer process owns the file: exclusive locking keeps a second server off it and
        # saves the shared-memory locking on every commit.
        self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def _migrate(self) -> None:
        (current,) = self._db.execute("PRAGMA user_version").fetchone()
        for number, statement in enumerate(_MIGRATIONS[current:], start=current + 1):
            with _transaction(self._db):
                self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number}")

    def load(self) -> dict[Series, Counts]:
        rows = self._db.execute("SELECT model, version, tp, tn, fp, fn FROM confusion")
        return {(model, version): Counts(*counts) for model, version, *counts in rows}

    def commit(self, deltas: Mapping[Series, Counts]) -> dict[Series, Counts]:
        totals = {}
        with _transaction(self._db):
            for (model, version), d in deltas.items():
                row = self._db.execute(_UPSERT, (model, version, d.tp, d.tn, d.fp, d.fn))
                totals[model, version] = Counts(*row.fetchone())
        return totals

    def ping(self) -> None:
        self._db.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self._db.close()


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
