"""The drift detectors inside SQLiteStore: fed by each transaction, their events and statuses
committed with the counts (the state every ``SAVE_EVERY`` commits, a journal of outcomes in
between), restored after a restart or a crash, untouched by a transaction that fails."""

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
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
