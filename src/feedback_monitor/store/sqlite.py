"""The embedded default store: one SQLite file in WAL mode with ``synchronous=FULL``.

Format (``PRAGMA user_version`` is the schema version, migrated forward at open):

- ``confusion(model, version, tp, tn, fp, fn, predicted, labelled, expired, delay_sum,
  scores, shard)``: one row per series: its confusion counts, the fate of its stored
  predictions, the sum of its label delays, its lifetime score histogram
  (``buckets.encode_scores``). ``shard`` (here always 0) is for PostgreSQL's several writers,
  whose rows of a series add up (``sql.py``); so for ``label_delays`` and ``buckets``.
- ``label_delays(model, version, bucket, count, shard)``: the label-delay histogram
  (``series.py``).
- ``outcomes(id, ...)``: every prediction or feedback that came with an id; ``actual`` is NULL
  while a prediction waits for its label. The id is the primary key, so a repeat is found, not
  counted; rows leave the prediction TTL after they were stored or labelled (then an id may be
  counted anew).
- ``buckets(...)``: the counts per minute, hour and day (``buckets.py``).
- ``drift_state(...)``, ``drift_events(...)``, ``drift_journal(...)``: the drift detectors
  (``watches.py``).
- ``probe(id, at)``: one row, rewritten by ``ping()`` to prove that commits still succeed.

The logic is ``sql.py``'s, shared with PostgreSQL. With ``synchronous=FULL`` the WAL is fsynced
before ``COMMIT`` returns: whatever a caller acknowledges afterwards survives a crash. A file
deleted or replaced under the running store would take every later commit with it, unseen
(they go to the open, unlinked file): each commit first checks that the paths still name the
files it has open, and fails (a 503) if not.
"""

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from feedback_monitor.store.sql import Database, SQLStore, check_schema

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
    # A primary key changes only with its table: each is copied into one keyed by shard too.
    # The drift detections of a series, counted once and kept with its detectors' state.
    """
    CREATE TABLE sharded (
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        tp INTEGER NOT NULL,
        tn INTEGER NOT NULL,
        fp INTEGER NOT NULL,
        fn INTEGER NOT NULL,
        predicted INTEGER NOT NULL DEFAULT 0,
        labelled INTEGER NOT NULL DEFAULT 0,
        expired INTEGER NOT NULL DEFAULT 0,
        delay_sum REAL NOT NULL DEFAULT 0,
        scores BLOB,
        shard INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (model, version, shard)
    ) WITHOUT ROWID, STRICT;
    INSERT INTO sharded SELECT *, 0 FROM confusion;
    DROP TABLE confusion;
    ALTER TABLE sharded RENAME TO confusion;
    CREATE TABLE sharded (
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        count INTEGER NOT NULL,
        shard INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (model, version, bucket, shard)
    ) WITHOUT ROWID, STRICT;
    INSERT INTO sharded SELECT *, 0 FROM label_delays;
    DROP TABLE label_delays;
    ALTER TABLE sharded RENAME TO label_delays;
    CREATE TABLE sharded (
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        resolution INTEGER NOT NULL,
        start INTEGER NOT NULL,
        a_tp INTEGER NOT NULL, a_tn INTEGER NOT NULL, a_fp INTEGER NOT NULL, a_fn INTEGER NOT NULL,
        p_tp INTEGER NOT NULL, p_tn INTEGER NOT NULL, p_fp INTEGER NOT NULL, p_fn INTEGER NOT NULL,
        a_scores BLOB,
        p_scores BLOB,
        shard INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (model, version, resolution, start, shard)
    ) WITHOUT ROWID, STRICT;
    INSERT INTO sharded SELECT *, 0 FROM buckets;
    DROP TABLE buckets;
    ALTER TABLE sharded RENAME TO buckets;
    CREATE INDEX buckets_by_age ON buckets (resolution, start);
    ALTER TABLE drift_state ADD COLUMN detections BLOB NOT NULL DEFAULT X'7B7D';
    UPDATE drift_state SET detections = CAST((
        SELECT json_group_object(detector, n) FROM (
            SELECT detector, count(*) AS n FROM drift_events AS e
            WHERE e.model = drift_state.model AND e.version = drift_state.version
            GROUP BY detector
        )
    ) AS BLOB);
    """,
    # The drift journal: the outcomes fed since a series' detectors were last saved.
    """
    CREATE TABLE drift_journal (
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        seq INTEGER NOT NULL,
        tp INTEGER NOT NULL,
        tn INTEGER NOT NULL,
        fp INTEGER NOT NULL,
        fn INTEGER NOT NULL,
        PRIMARY KEY (model, version, seq)
    ) WITHOUT ROWID, STRICT;
    """,
)


class SQLiteConnector:
    """One connection, the only writer, holding the file exclusively."""

    retryable: tuple[type[Exception], ...] = ()  # nobody else writes: nothing to lose a race to
    shared = False
    shard = 0

    def __init__(self, path: Path, lock_timeout: float) -> None:
        # Autocommit mode: transactions are opened and closed explicitly below.
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            self._configure(lock_timeout)
        except BaseException:
            self.db.close()
            raise
        # The files open, by path: the database, and its WAL (opened at once to read the schema).
        wal = path.with_name(path.name + "-wal")
        self._files = {file: _identity(file) for file in (path, wal)}

    def _configure(self, lock_timeout: float) -> None:
        # A server restarted right after a crash waits for the old store process to let go.
        self.db.execute(f"PRAGMA busy_timeout={int(lock_timeout * 1000)}")
        # One writer process owns the file: exclusive locking keeps a second server off it and
        # saves the shared-memory locking on every commit.
        self.db.execute("PRAGMA locking_mode=EXCLUSIVE")
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        (current,) = self.db.execute("PRAGMA user_version").fetchone()
        check_schema(current, len(_MIGRATIONS))
        for number, statement in enumerate(_MIGRATIONS[current:], start=current + 1):
            # executescript commits first, so the script carries its own transaction.
            self.db.executescript(f"BEGIN; {statement}; PRAGMA user_version = {number}; COMMIT;")

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """``BEGIN`` ... ``COMMIT``, rolled back if the body or the COMMIT raises (unless SQLite
        did so itself, as it does on a full disk: a ROLLBACK then would fail and hide why)."""
        self.db.execute("BEGIN")  # deferred: the only writer never waits for a lock
        try:
            yield self.db
            self._check_files()
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    def _check_files(self) -> None:
        """Fail unless the database and its WAL are still the files at their paths."""
        for path, known in self._files.items():
            if _identity(path) != known:
                raise OSError(f"{path} was deleted or replaced while open")

    def lock_ids(self, db: Database, ids: Sequence[str]) -> None:
        pass  # the only writer waits for nobody

    def lock_series(self, db: Database) -> None:
        pass

    @contextmanager
    def reading(self) -> Iterator[Database]:
        yield self.db

    def close(self) -> None:
        self.db.close()


def _identity(path: Path) -> tuple[int, int] | None:
    """The device and inode of the file at ``path``, None if there is none."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


class SQLiteStore(SQLStore):
    """Confusion counts, predictions and idempotency keys in ``<data_dir>/feedback.sqlite3``."""

    def __init__(self, data_dir: Path, lock_timeout: float = 15.0) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / FILENAME
        connector = SQLiteConnector(self.path, lock_timeout)
        super().__init__(connector)
        self._db = connector.db
