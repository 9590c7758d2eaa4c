"""The drift detectors of PostgresStore when writers share a series: one at a time feeds it, the
others post their outcomes to the inbox. Against a fresh ``SeriesWatch`` fed the commits in
order: every committed outcome is fed once, in commit order and at its own commit's time,
whoever feeds it and whenever (the next commit, after a restart, an expiry), and a feed that
fails leaves the inbox to the next one."""

import contextlib
import itertools
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from feedback_monitor.confusion import Counts
from feedback_monitor.drift.watch import SeriesWatch
from feedback_monitor.series import DriftStatus
from feedback_monitor.store import Entry, Totals, watches
from feedback_monitor.store.postgres import PostgresStore
from tests.drift_blocks import Found, found
from tests.integration import postgres
from tests.test_sqlite_drift import ALL, CHANGE, COMMITS, DROPPING, as_events, at, statuses

_databases = itertools.count()


@pytest.fixture(scope="module")
def cluster() -> Iterator[postgres.Cluster]:
    with postgres.cluster() as started:
        yield started


@pytest.fixture
def url(cluster: postgres.Cluster) -> str:
    return cluster.database(f"drift_{next(_databases)}")


@contextlib.contextmanager
def fed_elsewhere(url: str) -> Iterator[None]:
    """DROPPING's detectors held by another session, as by a writer in the middle of a feed."""
    key = (watches._LOCKS, watches._lock_key(DROPPING))
    with psycopg.connect(url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, %s)", key)
        yield
        other.execute("SELECT pg_advisory_unlock(%s, %s)", key)  # a closing session's is late


def commit(store: PostgresStore, index: int) -> Totals:
    _, totals = store.write([Entry({DROPPING: COMMITS[index]}, [])], at(index))
    return totals


def waiting(url: str) -> int:
    with psycopg.connect(url) as db:
        row = db.execute("SELECT count(*) FROM drift_inbox").fetchone()
    return int(row[0]) if row else 0


class Oracle:
    """A fresh watch fed the commits in order, and the drifts it found."""

    def __init__(self) -> None:
        self.watch = SeriesWatch()
        self.drifts: list[Found] = []

    def feed(self, *indices: int) -> tuple[DriftStatus, ...]:
        for index in indices:
            self.drifts += found(self.watch, COMMITS[index : index + 1], index)
        return statuses(self.watch, self.drifts)


def test_outcomes_committed_during_another_feed_are_fed_by_the_next_in_order(url: str) -> None:
    held = range(CHANGE - 10, CHANGE + 10)  # the drop and the drifts it brings, mostly
    oracle, store = Oracle(), PostgresStore(url)
    try:
        with contextlib.ExitStack() as elsewhere:
            for index in range(len(COMMITS)):
                if index == held.start:
                    elsewhere.enter_context(fed_elsewhere(url))
                    last = oracle.feed()
                if index == held.stop:
                    elsewhere.close()
                    expected = oracle.feed(*held, index)
                elif index in held:
                    expected = last  # the statuses of the last feed, until the next
                else:
                    expected = oracle.feed(index)
                assert commit(store, index)[DROPPING].drift == expected, index
                assert waiting(url) == (index - held.start + 1 if index in held else 0)
        assert any(d.commit in held for d in oracle.drifts)
        assert store.events(DROPPING, ALL) == as_events(oracle.drifts)
        assert store.load()[DROPPING].counts == sum(COMMITS, Counts())
    finally:
        store.close()


def test_the_inbox_outlives_its_writer_and_an_expiry_feeds_it(url: str) -> None:
    with fed_elsewhere(url):
        first = PostgresStore(url)
        for index in range(CHANGE + 20):
            assert commit(first, index)[DROPPING].drift == ()  # nothing fed yet
        first.close()
    assert waiting(url) == CHANGE + 20
    oracle, second = Oracle(), PostgresStore(url)
    try:
        assert second.expire(0.0)[DROPPING].drift == oracle.feed(*range(CHANGE + 20))
        assert waiting(url) == 0
        assert oracle.drifts
        assert second.events(DROPPING, ALL) == as_events(oracle.drifts)
        assert second.load()[DROPPING].drift == statuses(oracle.watch, oracle.drifts)
        assert commit(second, CHANGE + 20)[DROPPING].drift == oracle.feed(CHANGE + 20)
    finally:
        second.close()


FAIL_AT_COMMIT = """
CREATE TABLE failing (id integer);
CREATE FUNCTION fail() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM failing) THEN RAISE EXCEPTION 'failing'; END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER fail AFTER INSERT OR UPDATE ON drift_state
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail();
"""


def test_a_feed_that_fails_leaves_the_inbox_to_the_next(url: str) -> None:
    oracle, store = Oracle(), PostgresStore(url)
    try:
        with fed_elsewhere(url):
            commit(store, 0)
            commit(store, 1)
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(FAIL_AT_COMMIT)
            db.execute("INSERT INTO failing VALUES (1)")
            with pytest.raises(psycopg.errors.RaiseException, match="failing"):
                commit(store, 2)  # fed 0, 1 and 2, then failed at COMMIT
            assert waiting(url) == 2
            assert db.execute("SELECT count(*) FROM drift_state").fetchone() == (0,)
            db.execute("DELETE FROM failing")
        assert commit(store, 3)[DROPPING].drift == oracle.feed(0, 1, 3)
        assert waiting(url) == 0
        assert store.load()[DROPPING].counts == COMMITS[0] + COMMITS[1] + COMMITS[3]
    finally:
        store.close()


def test_writers_racing_on_one_series_feed_each_commit_once(url: str) -> None:
    """Each writer's commits are alike, so the detectors end the same in any order."""
    each, commits = Counts(tp=5, tn=2, fp=2, fn=1), 40
    start = threading.Barrier(3)

    def write() -> list[Totals]:
        store = PostgresStore(url)
        start.wait()
        try:
            return [store.commit({DROPPING: each}) for _ in range(commits)]
        finally:
            store.close()

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: write(), range(3)))
    for mine in answers:  # global totals: at least what the writer itself added, and growing
        totals = [t[DROPPING].counts.total for t in mine]
        assert totals == sorted(totals)
        assert all(total >= each.total * n for n, total in enumerate(totals, 1))
    store = PostgresStore(url)
    try:
        store.expire(0.0)  # whatever still waits
        watch = SeriesWatch()
        drifts = found(watch, [each] * (3 * commits))
        assert waiting(url) == 0
        assert store.load()[DROPPING].counts == Counts(*(3 * commits * n for n in each.fields))
        assert store.load()[DROPPING].drift == statuses(watch, drifts)
        assert len(store.events(DROPPING, ALL)) == len(drifts)
        with psycopg.connect(url) as db:
            row = db.execute("SELECT state FROM drift_state").fetchone()
        assert row is not None
        assert json.loads(bytes(row[0])) == json.loads(json.dumps(watch.state()))
    finally:
        store.close()
