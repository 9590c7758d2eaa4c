"""The drift detectors inside SQLiteStore: fed by each transaction, their events and statuses
committed with the counts (the state every ``SAVE_EVERY`` commits, a journal of outcomes in
between), restored after a restart or a crash, untouched by a transaction that fails."""

import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import pytest

from feedback_monitor.confusion import Counts
from feedback_monitor.drift.watch import DETECTORS, SeriesWatch
from feedback_monitor.series import DriftStatus
from feedback_monitor.store import DriftEvent, Entry, Series, Totals
from feedback_monitor.store.sqlite import SQLiteStore
from feedback_monitor.store.watches import SAVE_EVERY
from tests.drift_blocks import (
    ERROR_DETECTORS,
    STEADY,
    WORSE,
    WORST,
    Found,
    blocks,
    detections,
    found,
)

DROPPING: Series = ("fraud", "v1")
STEADY_SERIES: Series = ("churn", "")
POISON: Series = ("poison", "")  # a trigger makes every write to it fail
T0 = 1_700_000_000.0
EVERY = 10.0  # seconds between commits
SIZE = 100
CHANGE = 6_000 // SIZE  # the first commit after the drop
COMMITS = blocks([(STEADY, 6_000), (WORSE, 4_000), (WORST, 4_000)], SIZE, seed=3)
OTHERS = blocks([(STEADY, len(COMMITS) * SIZE)], SIZE, seed=4)
ALL = 1_000  # more events than the stream has


def at(index: int) -> float:
    return T0 + EVERY * index


def oracle(commits: Sequence[Counts]) -> tuple[list[Found], SeriesWatch]:
    """What a fresh watch finds in the commits, and the watch afterwards."""
    watch = SeriesWatch()
    return found(watch, commits), watch


def as_events(drifts: Iterable[Found]) -> list[DriftEvent]:
    """The drifts as the store lists them: newest first, and within a commit the last first."""
    return [DriftEvent(d.detector, at(d.commit), d.statistic) for d in reversed(list(drifts))]


def statuses(watch: SeriesWatch, drifts: Sequence[Found]) -> tuple[DriftStatus, ...]:
    counted = detections(drifts)
    return tuple(
        DriftStatus(name, status, counted.get(name, 0)) for name, status in watch.statuses().items()
    )


def write(store: SQLiteStore, index: int, *extra: Series) -> Totals:
    """Commit ``index`` of both series (and one outcome of each ``extra``) at its own time."""
    deltas = {DROPPING: COMMITS[index], STEADY_SERIES: OTHERS[index]}
    deltas |= {series: Counts(tp=1) for series in extra}
    _, totals = store.write([Entry(deltas, [])], at(index))
    return totals


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data_dir: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(data_dir)
    yield opened
    opened.close()


STATES = "SELECT * FROM drift_state ORDER BY model, version"
EVENTS = "SELECT * FROM drift_events ORDER BY rowid"


def rows(path: Path, query: str) -> list[tuple[object, ...]]:
    """What a query reads from the file itself (after the store let go of it)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(query).fetchall()


def test_a_drop_in_many_small_transactions_is_found_by_the_error_detectors(
    store: SQLiteStore,
) -> None:
    for index in range(len(COMMITS)):
        write(store, index)
    drifts, _ = oracle(COMMITS)
    events = store.events(DROPPING, ALL)
    assert events == as_events(drifts)
    assert {event.detector for event in events} == ERROR_DETECTORS
    assert min(event.at for event in events) >= at(CHANGE)
    assert [event.at for event in events] == sorted((event.at for event in events), reverse=True)
    assert store.events(STEADY_SERIES, ALL) == []
    assert store.events(DROPPING, 2) == events[:2]
    store.close()
    assert rows(store.path, EVENTS) == [
        (*DROPPING, d.detector, at(d.commit), d.statistic) for d in drifts
    ]


def test_every_commit_answers_the_statuses_and_detections_it_left(store: SQLiteStore) -> None:
    watch, drifts = SeriesWatch(), []
    for index in range(len(COMMITS)):
        totals = write(store, index)
        new = found(watch, COMMITS[index : index + 1], index)
        drifts += new
        assert totals[DROPPING].drift == statuses(watch, drifts), index
        # The commit that found a drift leaves its detector at 2, the next one moves it on.
        now = {s.detector: s.status for s in totals[DROPPING].drift}
        assert {name for name, status in now.items() if status == 2} == {d.detector for d in new}
    assert drifts


def test_loaded_states_carry_detections_equal_to_the_events(
    store: SQLiteStore, data_dir: Path
) -> None:
    for index in range(len(COMMITS)):
        write(store, index)
    loaded = store.load()
    events = store.events(DROPPING, ALL)
    counted = {name: sum(e.detector == name for e in events) for name in DETECTORS}
    assert {s.detector: s.detections for s in loaded[DROPPING].drift} == counted
    assert [s.detector for s in loaded[DROPPING].drift] == list(DETECTORS)
    assert {s.detections for s in loaded[STEADY_SERIES].drift} == {0}
    store.close()
    reopened = SQLiteStore(data_dir)
    try:
        assert reopened.load()[DROPPING].drift == loaded[DROPPING].drift
    finally:
        reopened.close()


JOURNAL = "SELECT model, version, seq FROM drift_journal ORDER BY model, version, seq"


def crash(store: SQLiteStore) -> None:
    """Let go of the file as a killed process would: nothing saved beyond the last commit."""
    store._connector.close()


@pytest.mark.parametrize("how", ["close", "crash"])
@pytest.mark.parametrize(
    "restarts",
    [
        (10,),
        (CHANGE + 2,),
        (SAVE_EVERY - 1, SAVE_EVERY, 2 * SAVE_EVERY + 1),
        (10, CHANGE, CHANGE + 1, CHANGE + 30),
    ],
)
def test_a_restarted_store_continues_exactly_as_an_uninterrupted_one(
    tmp_path: Path, restarts: tuple[int, ...], how: str
) -> None:
    """At commit 10 DDM has not warmed up yet; just after the drop every detector is mid-way.
    A crash leaves the outcomes since the last save in the journal, for the restart to replay;
    a clean close saves every state first, so that nothing is left to replay."""
    uninterrupted = SQLiteStore(tmp_path / "uninterrupted")
    restarted = SQLiteStore(tmp_path / "restarted")
    try:
        for index in range(len(COMMITS)):
            if index in restarts:
                (crash if how == "crash" else SQLiteStore.close)(restarted)
                journal = rows(restarted.path, JOURNAL)
                if how == "close":
                    assert journal == []
                else:
                    kept = [seq for model, version, seq in journal if (model, version) == DROPPING]
                    assert kept == list(range(1, index % SAVE_EVERY + 1))
                restarted = SQLiteStore(tmp_path / "restarted")
                assert restarted.load() == uninterrupted.load()
                for series, state in uninterrupted.load().items():
                    assert restarted.load()[series].drift == state.drift
            assert (
                write(restarted, index)[DROPPING].drift
                == write(uninterrupted, index)[DROPPING].drift
            )
        assert restarted.events(DROPPING, ALL) == uninterrupted.events(DROPPING, ALL)
        assert restarted.events(DROPPING, ALL) == as_events(oracle(COMMITS)[0])
        assert restarted.load()[DROPPING].drift == uninterrupted.load()[DROPPING].drift
    finally:
        restarted.close()
        uninterrupted.close()
    for query in (STATES, EVENTS):
        assert rows(restarted.path, query) == rows(uninterrupted.path, query)


def poisoned(data_dir: Path, table: str) -> SQLiteStore:
    """A store whose every write to the POISON series fails inside the transaction, as it
    writes to ``table``: its counts (before any series' detectors are fed) or its drift journal
    (after the series sorted before it have fed theirs)."""
    SQLiteStore(data_dir).close()
    with contextlib.closing(sqlite3.connect(data_dir / "feedback.sqlite3")) as db:
        db.execute(
            f"CREATE TRIGGER poison BEFORE INSERT ON {table} WHEN NEW.model = 'poison'"
            " BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
        )
    return SQLiteStore(data_dir)


@pytest.mark.parametrize("table", ["confusion", "drift_journal"])
def test_a_failed_transaction_leaves_the_detectors_as_committed(data_dir: Path, table: str) -> None:
    drifts, watch = oracle(COMMITS)
    # The first commit, a warm-up one, one that saves the state, each that finds a drift.
    failing = {0, 5, SAVE_EVERY - 1, *(d.commit for d in drifts)}
    store = poisoned(data_dir, table)
    try:
        for index in range(len(COMMITS)):
            if index in failing:
                before = (store.load(), store.events(DROPPING, ALL))
                with pytest.raises(sqlite3.IntegrityError, match="poisoned"):
                    write(store, index, POISON)
                after = (store.load(), store.events(DROPPING, ALL))
                assert after == before
                assert [s.drift for s in after[0].values()] == [s.drift for s in before[0].values()]
            write(store, index)
        assert store.events(DROPPING, ALL) == as_events(drifts)
        assert store.load()[DROPPING].drift == statuses(watch, drifts)
    finally:
        store.close()
    reopened = SQLiteStore(data_dir)
    try:
        assert reopened.load()[DROPPING].drift == statuses(watch, drifts)
        assert POISON not in reopened.load()
    finally:
        reopened.close()


def test_a_commit_without_outcomes_leaves_the_detectors_as_they_were(store: SQLiteStore) -> None:
    """Feeding a block of no outcomes would still move a detector on (a drift to a warning)."""
    drifts, _ = oracle(COMMITS)
    first = drifts[0].commit
    for index in range(first + 1):
        found_now = write(store, index)[DROPPING].drift
    assert any(s.status == 2 for s in found_now)
    _, again = store.write([Entry({DROPPING: Counts()}, [])], at(first))
    assert again[DROPPING].drift == found_now
    assert store.load()[DROPPING].drift == found_now


@pytest.mark.parametrize("crash_at", [SAVE_EVERY + 5, 2 * SAVE_EVERY + 7, 3 * SAVE_EVERY])
def test_series_saved_on_cycles_of_their_own_restore_exactly_after_a_crash(
    tmp_path: Path, crash_at: int
) -> None:
    """One series is written by every commit, the other by every third: each saves its state
    at its own 32nd commit and journals its own."""

    def commit(store: SQLiteStore, index: int) -> Totals:
        deltas = {DROPPING: COMMITS[index]}
        if index % 3 == 0:
            deltas[STEADY_SERIES] = OTHERS[index]
        return store.write([Entry(deltas, [])], at(index))[1]

    uninterrupted = SQLiteStore(tmp_path / "uninterrupted")
    crashed = SQLiteStore(tmp_path / "crashed")
    try:
        for index in range(len(COMMITS)):
            if index == crash_at:
                crash(crashed)
                journal = rows(crashed.path, JOURNAL)
                for series, written in ((DROPPING, crash_at), (STEADY_SERIES, (crash_at + 2) // 3)):
                    kept = [seq for model, version, seq in journal if (model, version) == series]
                    assert kept == list(range(1, written % SAVE_EVERY + 1)), series
                crashed = SQLiteStore(tmp_path / "crashed")
                assert crashed.load() == uninterrupted.load()
            assert commit(crashed, index) == commit(uninterrupted, index)
        assert crashed.events(DROPPING, ALL) == uninterrupted.events(DROPPING, ALL)
    finally:
        crashed.close()
        uninterrupted.close()


def failing_on(data_dir: Path, table: str) -> tuple[SQLiteStore, Callable[[bool], None]]:
    """A store whose writes to ``table`` for the DROPPING series fail while the switch is on."""
    SQLiteStore(data_dir).close()
    with contextlib.closing(sqlite3.connect(data_dir / "feedback.sqlite3")) as db:
        db.execute("CREATE TABLE switch (on_ INTEGER NOT NULL)")
        db.execute("INSERT INTO switch VALUES (0)")
        db.execute(
            f"CREATE TRIGGER failing BEFORE INSERT ON {table}"
            " WHEN NEW.model = 'fraud' AND (SELECT on_ FROM switch) = 1"
            " BEGIN SELECT RAISE(ABORT, 'failed on purpose'); END"
        )
        db.commit()
    store = SQLiteStore(data_dir)

    def switch(on: bool) -> None:
        store._db.execute("UPDATE switch SET on_ = ?", (int(on),))

    return store, switch


@pytest.mark.parametrize("table", ["drift_journal", "drift_state", "drift_events"])
def test_a_failure_in_a_series_own_drift_writes_leaves_its_detectors_as_committed(
    data_dir: Path, table: str
) -> None:
    """The write fails after the series' detectors took the commit's outcomes in memory: its
    journal row, its saved state (every 32nd commit) or a drift it found."""
    drifts, watch = oracle(COMMITS)
    failing = {
        "drift_journal": {3, SAVE_EVERY + 8},
        "drift_state": {SAVE_EVERY - 1, 2 * SAVE_EVERY - 1},
        "drift_events": {d.commit for d in drifts[:3]},
    }[table]
    store, switch = failing_on(data_dir, table)
    try:
        for index in range(len(COMMITS)):
            if index in failing:
                before = (store.load(), store.events(DROPPING, ALL))
                switch(True)
                with pytest.raises(sqlite3.IntegrityError, match="failed on purpose"):
                    write(store, index)
                switch(False)
                assert (store.load(), store.events(DROPPING, ALL)) == before
            write(store, index)
        assert store.events(DROPPING, ALL) == as_events(drifts)
        assert store.load()[DROPPING].drift == statuses(watch, drifts)
    finally:
        store.close()


def test_a_save_that_fails_at_close_leaves_the_journal_to_the_next_start(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    drifts, watch = oracle(COMMITS)
    stop = SAVE_EVERY + 10
    store, switch = failing_on(data_dir, "drift_state")
    for index in range(stop):
        write(store, index)
    switch(True)
    store.close()  # the failure is logged, not raised: the journal still holds everything
    assert "saving the drift detectors at close failed" in caplog.text
    assert len(rows(store.path, JOURNAL)) == 2 * (stop % SAVE_EVERY)  # both series
    reopened = SQLiteStore(data_dir)
    reopened._db.execute("UPDATE switch SET on_ = 0")
    try:
        for index in range(stop, len(COMMITS)):
            write(reopened, index)
        assert reopened.events(DROPPING, ALL) == as_events(drifts)
        assert reopened.load()[DROPPING].drift == statuses(watch, drifts)
    finally:
        reopened.close()


def test_a_flush_rolled_back_leaves_the_detectors_to_be_rebuilt(data_dir: Path) -> None:
    """The states a failed flush meant to save are still journalled: memory must not claim
    otherwise, or the next commit's journal row would take a number already used."""
    drifts, watch = oracle(COMMITS)
    store, switch = failing_on(data_dir, "drift_state")
    try:
        for index in range(len(COMMITS)):
            if index == SAVE_EVERY + 10:
                switch(True)
                with pytest.raises(sqlite3.IntegrityError, match="failed on purpose"):
                    store._transact(store._watches.flush)
                switch(False)
            write(store, index)
        assert store.events(DROPPING, ALL) == as_events(drifts)
        assert store.load()[DROPPING].drift == statuses(watch, drifts)
    finally:
        store.close()
