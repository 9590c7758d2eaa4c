"""The embedded default store: one SQLite file in WAL mode with ``synchronous=FULL``.

Format (``PRAGMA user_version`` is the schema version, migrated forward at open):

- ``confusion(model, version, tp, tn, fp, fn)``: one row per series, the committed counts.
- ``probe(id, at)``: one row, rewritten by ``ping()`` to prove that commits still succeed.

A commit is one transaction; with ``synchronous=FULL`` the WAL is fsynced
before ``COMMIT`` returns, so whatever a caller acknowledges after ``commit()`` survives a crash.
"""

import sqlite3
import time
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
    ) WITHOUT ROWID, STRICT;
    CREATE TABLE probe (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL) STRICT;
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

    def _migrate(self) -> None:
        (current,) = self._db.execute("PRAGMA user_version").fetchone()
        for number, statement in enumerate(_MIGRATIONS[current:], start=current + 1):
            # executescript commits first, so the script carries its own transaction.
            self._db.executescript(f"BEGIN; {statement}; PRAGMA user_version = {number}; COMMIT;")

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
        """A real write: a full disk or a lost lock fails here, not only in the next commit."""
        with _transaction(self._db):
            self._db.execute("INSERT OR REPLACE INTO probe VALUES (1, ?)", (time.time(),))

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
