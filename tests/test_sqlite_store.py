"""SQLiteStore on a real file: totals, durability settings, schema version, exclusivity."""

import contextlib
import json
import random
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from feedback_monitor.confusion import Counts
from feedback_monitor.drift.watch import SeriesWatch
from feedback_monitor.series import SeriesState
from feedback_monitor.store import Series
from feedback_monitor.store import sqlite as sqlite_store
from feedback_monitor.store.sql import NewerSchema
from feedback_monitor.store.sqlite import SQLiteStore
from feedback_monitor.windows import HOUR, MINUTE, TimeView
from tests.stores import check_migrated

A: Series = ("default", "")
B: Series = ("churn", "2024-06")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "nested"  # not there yet: the store creates it


@pytest.fixture
def store(data_dir: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(data_dir)
    yield opened
    opened.close()


def states(counts: Mapping[Series, Counts]) -> dict[Series, SeriesState]:
    """What the store holds for series that only ever got id-less feedback."""
    return {series: SeriesState(c) for series, c in counts.items()}


def random_deltas(rng: random.Random) -> dict[Series, Counts]:
    series = rng.sample([A, B, ("fraud", "v1"), ("fraud", "v2"), ("ünïcode", "'; --")], 3)
    return {s: Counts(*(rng.randrange(50) for _ in range(4))) for s in series}


def add_up(*deltas: dict[Series, Counts]) -> dict[Series, Counts]:
    totals: dict[Series, Counts] = {}
    for delta in deltas:
        for series, counts in delta.items():
            totals[series] = totals.get(series, Counts()) + counts
    return totals


def test_a_new_store_is_empty_and_answers(store: SQLiteStore, data_dir: Path) -> None:
    assert store.path == data_dir / sqlite_store.FILENAME
    assert store.path.is_file()
    assert store.load() == {}
    store.ping()


def test_commit_returns_the_totals_it_produced(store: SQLiteStore) -> None:
    first = {A: Counts(1, 2, 3, 4), B: Counts(tp=1)}
    assert store.commit(first) == states(first)
    second = {A: Counts(10, 0, 0, 1)}
    assert store.commit(second) == states({A: Counts(11, 2, 3, 5)})  # only the series touched
    assert store.load() == states(add_up(first, second))


def test_empty_commit_changes_nothing(store: SQLiteStore) -> None:
    store.commit({A: Counts(tn=1)})
    assert store.commit({}) == {}
    assert store.write([], 0.0) == ([], {})
    assert store.load() == states({A: Counts(tn=1)})


@pytest.mark.parametrize("seed", range(3))
def test_load_after_reopen_equals_the_committed_totals(data_dir: Path, seed: int) -> None:
    rng = random.Random(seed)
    committed = [random_deltas(rng) for _ in range(20)]
    first = SQLiteStore(data_dir)
    returned = [first.commit(delta) for delta in committed]
    first.close()
    running: dict[Series, Counts] = {}
    for delta, answer in zip(committed, returned, strict=True):
        running = add_up(running, delta)
        assert answer == states({series: running[series] for series in delta})
    reopened = SQLiteStore(data_dir)
    try:
        assert reopened.load() == states(add_up(*committed))
    finally:
        reopened.close()


def pragma(db: sqlite3.Connection, name: str) -> object:
    return db.execute(f"PRAGMA {name}").fetchone()[0]


def test_durability_pragmas_are_in_force(store: SQLiteStore) -> None:
    db = store._db  # per-connection settings can only be read on the store's own connection
    assert pragma(db, "journal_mode") == "wal"
    assert pragma(db, "synchronous") == 2  # FULL
    assert pragma(db, "locking_mode") == "exclusive"


def test_schema_version_is_set_and_kept(data_dir: Path) -> None:
    SQLiteStore(data_dir).close()
    SQLiteStore(data_dir).close()  # reopening migrates nothing twice
    with sqlite3.connect(data_dir / sqlite_store.FILENAME) as db:
        version = pragma(db, "user_version")
        tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        journal_mode = pragma(db, "journal_mode")
    db.close()
    assert version == len(sqlite_store._MIGRATIONS) >= 2
    assert sorted(tables) == [
        ("buckets",),
        ("confusion",),
        ("drift_events",),
        ("drift_journal",),
        ("drift_state",),
        ("label_delays",),
        ("outcomes",),
        ("probe",),
    ]
    assert journal_mode == "wal"  # WAL is a property of the file, not only of a connection


def test_a_file_of_a_newer_schema_is_not_opened(data_dir: Path) -> None:
    """An older version would misread it (a drift journal it does not know, say)."""
    data_dir.mkdir(parents=True)
    newer = len(sqlite_store._MIGRATIONS) + 1
    with contextlib.closing(sqlite3.connect(data_dir / sqlite_store.FILENAME)) as db:
        db.execute(f"PRAGMA user_version = {newer}")
    with pytest.raises(NewerSchema, match=f"schema version {newer}, newer than"):
        SQLiteStore(data_dir)
    with contextlib.closing(sqlite3.connect(data_dir / sqlite_store.FILENAME)) as db:
        assert pragma(db, "user_version") == newer  # untouched
        assert db.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_a_file_of_the_first_schema_is_migrated_with_its_counts(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    with sqlite3.connect(data_dir / sqlite_store.FILENAME) as db:
        db.executescript(sqlite_store._MIGRATIONS[0] + "PRAGMA user_version = 1;")
        db.execute("INSERT INTO confusion VALUES ('churn', '2024-06', 1, 2, 3, 4)")
    db.close()
    store = SQLiteStore(data_dir)
    try:
        assert store.load() == states({B: Counts(1, 2, 3, 4)})
        assert store.commit({B: Counts(tp=1)}) == states({B: Counts(2, 2, 3, 4)})
    finally:
        store.close()


def test_a_file_of_schema_5_is_migrated_to_shards_with_its_rows(data_dir: Path) -> None:
    data_dir.mkdir(parents=True)
    start = 1_700_000_000 // HOUR * HOUR
    with contextlib.closing(sqlite3.connect(data_dir / sqlite_store.FILENAME)) as db:
        db.executescript("".join(sqlite_store._MIGRATIONS[:5]) + "PRAGMA user_version = 5;")
        db.execute("INSERT INTO confusion VALUES (?, ?, 1, 2, 3, 4, 5, 4, 1, 9.5, NULL)", B)
        db.execute("INSERT INTO label_delays VALUES (?, ?, 2, 4)", B)
        db.execute("INSERT INTO buckets VALUES (?, ?, ?, ?, 1, 2, 3, 4, 1, 2, 3, 4, NULL, NULL)",
                   (*B, MINUTE, start))  # fmt: skip
        db.execute("INSERT INTO drift_state VALUES (?, ?, ?)",
                   (*B, json.dumps(SeriesWatch().state()).encode()))  # fmt: skip
        for detector in ("adwin", "adwin", "ddm"):
            db.execute("INSERT INTO drift_events VALUES (?, ?, ?, 0, 0)", (*B, detector))
        db.commit()
    store = SQLiteStore(data_dir)
    try:
        check_migrated(store, B, start, TimeView.PREDICTION)
    finally:
        store.close()
    tables = rows(data_dir, "SELECT name FROM sqlite_master WHERE type = 'index' ORDER BY name")
    assert ("buckets_by_age",) in tables


def rows(data_dir: Path, query: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(data_dir / sqlite_store.FILENAME)) as db:
        return db.execute(query).fetchall()


def test_the_open_store_locks_out_other_connections(store: SQLiteStore) -> None:
    store.commit({A: Counts(tp=1)})
    other = sqlite3.connect(store.path, timeout=0)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("SELECT * FROM confusion").fetchall()
    finally:
        other.close()


def test_a_second_store_on_the_same_dir_fails_while_the_first_is_open(
    store: SQLiteStore, data_dir: Path
) -> None:
    # The second store waits out its lock timeout before failing.
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        SQLiteStore(data_dir, lock_timeout=0.2)
    store.commit({A: Counts(fn=1)})  # the first store is unharmed
    assert store.load() == states({A: Counts(fn=1)})


def test_a_second_store_opens_once_the_first_is_closed(data_dir: Path) -> None:
    first = SQLiteStore(data_dir)
    first.commit({B: Counts(fp=7)})
    first.close()
    second = SQLiteStore(data_dir)
    try:
        assert second.load() == states({B: Counts(fp=7)})
    finally:
        second.close()


def test_a_failing_commit_rolls_back_every_series(store: SQLiteStore) -> None:
    store.commit({A: Counts(1, 1, 1, 1)})
    before = store.load()
    # A writes first, then B's value cannot be bound: the whole transaction must go.
    poisoned = {A: Counts(tp=100), B: Counts(tp=2**63)}
    with pytest.raises(OverflowError):
        store.commit(poisoned)
    assert store.load() == before
    assert store.commit({A: Counts(tn=1)}) == states({A: Counts(1, 2, 1, 1)})  # none left open


def test_a_transaction_sqlite_rolled_back_itself_fails_with_its_own_error(
    store: SQLiteStore,
) -> None:
    """On a full disk SQLite may roll the whole transaction back itself: a ROLLBACK after it
    failed ("no transaction is active"), an error that hid the full disk's, read as a bug."""
    full = sqlite3.OperationalError("database or disk is full")

    def rolled_back_by_sqlite() -> None:
        with store._connector.transaction() as db:
            db.execute("INSERT INTO probe VALUES (1, 0)")
            db.execute("ROLLBACK")  # as SQLite does before the error reaches us
            raise full

    with pytest.raises(sqlite3.OperationalError) as raised:
        rolled_back_by_sqlite()
    assert raised.value is full
    store.commit({A: Counts(tn=1)})  # and the next transaction starts


def test_calls_after_close_are_errors(data_dir: Path) -> None:
    closed = SQLiteStore(data_dir)
    closed.close()
    with pytest.raises(sqlite3.ProgrammingError):
        closed.ping()
    with pytest.raises(sqlite3.ProgrammingError):
        closed.commit({A: Counts(tp=1)})
    with pytest.raises(sqlite3.ProgrammingError):
        closed.expire(0.0)


@pytest.mark.parametrize("suffix", ["", "-wal"])
@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_file_deleted_or_replaced_under_the_store_fails_every_commit(
    data_dir: Path, suffix: str, how: str
) -> None:
    """Commits would go on into the open, unlinked file and be lost at the next start."""
    store = SQLiteStore(data_dir)
    try:
        store.commit({A: Counts(tp=1)})
        path = store.path.with_name(store.path.name + suffix)
        path.unlink()
        if how == "replaced":
            path.write_bytes(b"")
        with pytest.raises(OSError, match="was deleted or replaced while open"):
            store.commit({A: Counts(tp=1)})
        with pytest.raises(OSError, match="was deleted or replaced"):
            store.ping()
    finally:
        store.close()
