"""PostgresStore on a real throwaway cluster: the SQLite store's scenarios, run again here
(imported below, so they take this module's ``store``), then what only several writers face:
migrations started together, shards of their own, writers racing on the same ids and series, a
server restart; and a database of the first schema migrated. (Drift detectors fed by several
writers: ``test_postgres_drift.py``.)"""

import asyncio
import json
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

from feedback_monitor import cli
from feedback_monitor.confusion import Counts
from feedback_monitor.drift.watch import SeriesWatch
from feedback_monitor.errors import StoreLost
from feedback_monitor.records import Feedback, Prediction
from feedback_monitor.store import Accepted, Entry, Refused, Series
from feedback_monitor.store.child import ChildStore
from feedback_monitor.store.postgres import (
    LOCK_TIMEOUT,
    MIGRATIONS,
    SHARDS,
    PostgresConnector,
    PostgresStore,
)
from feedback_monitor.store.sql import NewerSchema
from feedback_monitor.windows import HOUR, MINUTE, TimeView
from tests.integration import postgres
from tests.integration.helpers import wait_until
from tests.stores import check_migrated
from tests.test_sqlite_buckets import (  # noqa: F401 - collected again, on PostgreSQL
    test_a_backfill_over_thousands_of_days_is_stored_whole,
    test_a_join_lands_at_its_prediction_in_one_view_and_its_label_in_the_other,
    test_points_count_each_step_that_has_outcomes,
)
from tests.test_sqlite_drift import (  # noqa: F401
    test_every_commit_answers_the_statuses_and_detections_it_left,
)
from tests.test_sqlite_store import (  # noqa: F401
    test_commit_returns_the_totals_it_produced,
    test_empty_commit_changes_nothing,
)
from tests.test_sqlite_store_ids import (  # noqa: F401
    test_a_batch_of_labels_joins_its_predictions_with_their_scores,
    test_a_label_contradicting_the_stored_prediction_is_409,
    test_a_label_repeating_the_stored_prediction_joins_it,
    test_a_prediction_then_its_feedback_counts_under_the_prediction,
    test_a_random_stream_matches_the_bookkeeping,
    test_a_refused_entry_leaves_no_trace_and_the_others_stand,
    test_a_score_absent_from_a_prediction_and_its_repeat_is_the_same,
    test_an_entry_under_a_cap_is_refused_at_its_first_item_past_it,
    test_an_unknown_id_is_404,
    test_entries_of_one_transaction_share_the_room_under_the_cap,
    test_expiry_drops_unlabelled_predictions_stored_before_the_cutoff,
    test_labels_of_a_stored_prediction_are_idempotent,
    test_many_labels_in_one_transaction_count_as_one_by_one,
    test_predictions_are_idempotent_and_conflicts_409,
    test_the_same_feedback_id_counts_once,
)

NOW = 1_700_000_000.0
A: Series = ("fraud", "v1")
B: Series = ("fraud", "v2")
TABLES = "confusion, label_delays, outcomes, buckets, drift_state, drift_events, drift_inbox, probe"
_databases = iter(range(1_000_000))


@pytest.fixture(scope="module")
def cluster() -> Iterator[postgres.Cluster]:
    with postgres.cluster() as started:
        yield started


@pytest.fixture(scope="module")
def shared(cluster: postgres.Cluster) -> str:
    """One database for the scenarios, emptied after each."""
    return cluster.database("scenarios")


@pytest.fixture
def store(shared: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(shared)
    yield opened
    opened.close()
    with psycopg.connect(shared, autocommit=True) as db:
        db.execute(f"TRUNCATE {TABLES}")


@pytest.fixture
def fresh(cluster: postgres.Cluster) -> str:
    """A database of its own, not migrated yet."""
    return cluster.database(f"fresh_{next(_databases)}")


def test_replicas_starting_together_migrate_once(fresh: str) -> None:
    with ThreadPoolExecutor(6) as pool:
        stores = list(pool.map(lambda _: PostgresStore(fresh), range(6)))
    for store in stores:
        store.close()
    with psycopg.connect(fresh) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(len(MIGRATIONS),)]
    reopened = PostgresStore(fresh)  # nothing left to migrate
    assert reopened.load() == {}
    reopened.close()


def test_a_database_of_a_newer_schema_is_not_opened(fresh: str) -> None:
    with psycopg.connect(fresh, autocommit=True) as db:
        db.execute("CREATE TABLE schema_version (version integer NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (%s)", (len(MIGRATIONS) + 1,))
    with pytest.raises(NewerSchema, match=f"schema version {len(MIGRATIONS) + 1}, newer"):
        PostgresStore(fresh)
    with psycopg.connect(fresh) as db:  # nothing was migrated
        assert db.execute("SELECT to_regclass('confusion')").fetchone() == (None,)


def test_the_command_line_refuses_a_newer_schema_in_one_line(
    fresh: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(fresh, autocommit=True) as db:
        db.execute("CREATE TABLE schema_version (version integer NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (%s)", (len(MIGRATIONS) + 1,))
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--store", fresh])
    assert exited.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert f"schema version {len(MIGRATIONS) + 1}, newer than this version's" in lines[0]


def test_the_first_call_after_the_server_is_back_succeeds(
    cluster: postgres.Cluster, fresh: str
) -> None:
    """No backoff between attempts to reconnect: each call tries, and the first after the
    outage connects (a pool that waited longer and longer kept failing for as long again)."""
    store = PostgresStore(fresh, timeout=2.0)
    try:
        cluster.server("stop")
        try:
            for _ in range(4):  # a pool's waits would now be 1, 2, 4 and 8 seconds
                with pytest.raises(psycopg.OperationalError):
                    store.ping()
        finally:
            cluster.server("start")
        store.ping()
    finally:
        store.close()


def test_a_lock_held_elsewhere_fails_the_call_instead_of_holding_it(
    store: PostgresStore, shared: str
) -> None:
    store.commit({A: Counts(tp=1)})
    with psycopg.connect(shared) as other:
        other.execute("LOCK TABLE confusion IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(errors.LockNotAvailable):
            store.commit({A: Counts(tp=1)})
        assert time.monotonic() - started < LOCK_TIMEOUT + 5.0  # a deadline, not a measurement
    assert store.commit({A: Counts(tp=1)})[A].counts == Counts(tp=2)


def test_a_failing_transaction_rolls_back_every_series(store: PostgresStore) -> None:
    store.commit({A: Counts(1, 1, 1, 1)})
    before = store.load()
    with pytest.raises(psycopg.errors.NumericValueOutOfRange):
        store.commit({A: Counts(tp=100), B: Counts(tp=2**63)})  # B's value is past bigint
    assert store.load() == before
    assert store.commit({A: Counts(tn=1)})[A].counts == Counts(1, 2, 1, 1)


def entry(*records: Feedback | Prediction) -> Entry:
    return Entry({}, list(enumerate(records)))


def race(url: str, writers: int, work: list[list[Entry]]) -> list[list[Accepted | Refused]]:
    """Each writer, a store of its own, writes its list of transactions, all at once."""
    start = threading.Barrier(writers)

    def run(transactions: list[Entry]) -> list[Accepted | Refused]:
        store = PostgresStore(url)
        start.wait()
        try:
            return [o for e in transactions for o in store.write([e], NOW)[0]]
        finally:
            store.close()

    with ThreadPoolExecutor(writers) as pool:
        return list(pool.map(run, work))


def test_writers_racing_on_the_same_ids_count_each_once(fresh: str) -> None:
    rng = random.Random(7)
    ids = [f"id-{n}" for n in range(60)]
    work = []
    for _ in range(3):  # every writer sends every id, in an order of its own
        shuffled = rng.sample(ids, len(ids))
        work.append([entry(Feedback(n % 2, 1, *(A if n % 3 else B), id=i))
                     for n, i in ((int(i[3:]), i) for i in shuffled)])  # fmt: skip
    outcomes = [o for mine in race(fresh, 3, work) for o in mine]
    assert all(isinstance(o, Accepted) for o in outcomes)
    assert sum(o.accepted for o in outcomes if isinstance(o, Accepted)) == len(ids)
    assert sum(o.duplicates for o in outcomes if isinstance(o, Accepted)) == 2 * len(ids)
    store = PostgresStore(fresh)
    loaded = store.load()
    store.close()
    assert loaded[A].counts + loaded[B].counts == Counts(tp=30, fn=30)


def test_concurrent_batches_of_many_ids_fit_the_lock_table(fresh: str) -> None:
    """Each transaction locks the hashes of its ids, at most 1,024: three batches of 5,000 ids
    at once took a lock per id, past the server's lock table ("out of shared memory"), a 503."""
    work = [[entry(*(Feedback(1, n % 2, *A, id=f"w{w}-{n}") for n in range(5000)))]
            for w in range(3)]  # fmt: skip
    outcomes = [o for mine in race(fresh, 3, work) for o in mine]
    assert outcomes == [Accepted(5000, 0, [A])] * 3
    store = PostgresStore(fresh)
    counts = store.load()[A].counts
    store.close()
    assert counts == Counts(tp=3 * 2500, fp=3 * 2500)


def test_batches_on_the_same_ids_take_turns_without_deadlocks(fresh: str) -> None:
    """Batches naming the same ids in opposite orders take their turns: each transaction holds
    its ids' locks, in order, before it writes. (Had they deadlocked, the one aborted inside its
    savepoint used to fail as a lost database, a 503, instead of being retried.)"""
    rounds = [[f"r{r}-{n}" for n in range(30)] for r in range(6)]
    work = [
        [entry(*(Feedback(1, int(i[-1]) % 2, *A, id=i) for i in ids)) for ids in rounds],
        [entry(*(Feedback(1, int(i[-1]) % 2, *A, id=i) for i in reversed(ids))) for ids in rounds],
    ]
    outcomes = [o for mine in race(fresh, 2, work) for o in mine]
    assert all(isinstance(o, Accepted) for o in outcomes)
    assert sum(o.accepted for o in outcomes if isinstance(o, Accepted)) == 6 * 30
    store = PostgresStore(fresh)
    counts = store.load()[A].counts
    store.close()
    assert counts == Counts(tp=6 * 15, fp=6 * 15)
    with psycopg.connect(fresh) as db:  # they took turns: none had to be aborted
        query = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        assert db.execute(query).fetchone() == (0,)


def test_writers_creating_series_at_once_never_pass_the_cap(fresh: str) -> None:
    """Writers that may create series take turns under the series lock, each counting those
    the others created: of 4 writers each creating 10 series of their own at once, exactly
    the cap's 12 are stored, and every other attempt is refused."""
    work = [
        [Entry({}, [(0, Feedback(1, 1, f"w{w}-{n}", id=f"w{w}-{n}"))], 12) for n in range(10)]
        for w in range(4)
    ]
    outcomes = [o for mine in race(fresh, 4, work) for o in mine]
    accepted = [o for o in outcomes if isinstance(o, Accepted)]
    assert len(accepted) == 12
    assert [o for o in outcomes if isinstance(o, Refused)] == [
        Refused(422, "Too many series", "series_cap", 0)
    ] * 28
    store = PostgresStore(fresh)
    loaded = store.load()
    store.close()
    assert sorted(loaded) == sorted(series for o in accepted for series in o.series)
    with psycopg.connect(fresh) as db:  # nor was the refused feedback's id stored
        assert db.execute("SELECT count(*) FROM outcomes").fetchone() == (12,)


def test_labels_racing_for_one_prediction_join_it_once(fresh: str) -> None:
    first = PostgresStore(fresh)
    predictions = [Prediction(f"p-{n}", 1, *A, score=0.9, timestamp=NOW - 60) for n in range(40)]
    first.write([entry(*predictions)], NOW)
    first.close()
    labels = [[entry(Feedback(None, n % 2, id=f"p-{n}")) for n in range(40)] for _ in range(4)]
    outcomes = [o for mine in race(fresh, 4, labels) for o in mine]
    assert sum(o.accepted for o in outcomes if isinstance(o, Accepted)) == 40
    store = PostgresStore(fresh)
    state = store.load()[A]
    store.close()
    assert state.counts == Counts(tp=20, fp=20)
    assert (state.predicted, state.labelled, state.delays[2]) == (40, 40, 40)
    assert state.scores is not None
    assert state.scores.total == 40


def test_every_writer_answers_the_global_totals(fresh: str) -> None:
    """A commit's totals include what other writers committed, delays and drift included."""
    one, other = PostgresStore(fresh), PostgresStore(fresh)
    try:
        one.write([entry(Feedback(1, 1, *A, timestamp=NOW - 30))], NOW)
        _, totals = other.write([Entry({A: Counts(fn=1)}, [])], NOW)
        assert totals[A].counts == Counts(tp=1, fn=1)
        assert sum(totals[A].delays) == 1
        assert totals == one.load() == other.load()
        for _ in range(30):  # the detectors see both writers' outcomes, in commit order
            one.commit({A: Counts(tp=50)})
            other.commit({A: Counts(fn=50)})
        assert one.load()[A].drift == other.load()[A].drift
    finally:
        one.close()
        other.close()


def test_a_restarted_server_is_reconnected_to(cluster: postgres.Cluster, fresh: str) -> None:
    store = PostgresStore(fresh, timeout=2.0)
    try:
        store.commit({A: Counts(tp=1)})
        cluster.server("stop")
        try:
            with pytest.raises(psycopg.OperationalError):
                store.ping()
            with pytest.raises(psycopg.OperationalError):
                store.commit({A: Counts(tp=1)})
        finally:
            cluster.server("start")
        store.ping()  # a fresh connection
        assert store.commit({A: Counts(tp=1)})[A].counts == Counts(tp=2)
    finally:
        store.close()


def test_each_writer_adds_to_a_shard_of_its_own_and_answers_the_sum(fresh: str) -> None:
    stores = [PostgresStore(fresh) for _ in range(SHARDS + 1)]  # the last one shares a shard
    try:
        for n, store in enumerate(stores, 1):
            assert store.commit({A: Counts(tp=1)})[A].counts == Counts(tp=n)
        assert all(store.load()[A].counts == Counts(tp=SHARDS + 1) for store in stores)
        with psycopg.connect(fresh) as db:
            shards = db.execute("SELECT shard, tp FROM confusion ORDER BY shard").fetchall()
        assert [shard for shard, _ in shards] == list(range(SHARDS))
        assert sum(tp for _, tp in shards) == SHARDS + 1
    finally:
        for store in stores:
            store.close()
    wait_until(lambda: not claimed(fresh), 10.0, "the shards let go with their connections")
    again = PostgresStore(fresh)
    try:
        again.commit({A: Counts(tp=1)})
        with psycopg.connect(fresh) as db:
            first = db.execute("SELECT tp FROM confusion WHERE shard = 0").fetchone()
        assert first == (shards[0][1] + 1,)
    finally:
        again.close()


def claimed(url: str) -> bool:
    """Whether any session of the database holds an advisory lock (a shard's)."""
    with psycopg.connect(url) as db:
        return db.execute(
            "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory'"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone() == (True,)


def test_refused_entries_leave_the_prepared_statements_usable(store: PostgresStore) -> None:
    """A refusal rolls back to a savepoint, after which psycopg drops its prepared statements;
    in a pipeline it used to do so late, under statements it had just prepared."""
    for n in range(4):
        refused = entry(Prediction(f"p-{n}", 1, *A, score=0.5), Feedback(None, 1, id=f"no-{n}"))
        joined = entry(Prediction(f"q-{n}", 1, *A, score=0.7, timestamp=NOW - 90),
                       Feedback(None, 0, id=f"q-{n}", score=0.6))  # fmt: skip
        outcomes, totals = store.write([refused, joined, Entry({A: Counts(tp=1)}, [])], NOW + n)
        assert outcomes[0] == Refused(404, "Unknown prediction id", "unknown_id", 1)
        assert outcomes[1] == Accepted(2, 0, [A])
        assert totals[A].counts == Counts(tp=n + 1, fp=n + 1)


def test_a_database_of_the_first_schema_is_migrated_with_its_rows(fresh: str) -> None:
    start = int(NOW) // HOUR * HOUR
    with psycopg.connect(fresh, autocommit=True) as db:
        db.execute("CREATE TABLE schema_version (version integer NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (1)")
        for statement in filter(str.strip, MIGRATIONS[0].split(";")):
            db.execute(statement)
        db.execute("INSERT INTO confusion VALUES ('fraud', 'v1', 1, 2, 3, 4, 5, 4, 1, 9.5, NULL)")
        db.execute("INSERT INTO label_delays VALUES ('fraud', 'v1', 2, 4)")
        db.execute("INSERT INTO buckets VALUES ('fraud', 'v1', %s, %s, 1, 2, 3, 4,"
                   " 1, 2, 3, 4, NULL, NULL)", (MINUTE, start))  # fmt: skip
        state = json.dumps(SeriesWatch().state()).encode()
        db.execute("INSERT INTO drift_state VALUES ('fraud', 'v1', %s)", (state,))
        for detector in ("adwin", "adwin", "ddm"):
            db.execute("INSERT INTO drift_events (model, version, detector, at, statistic)"
                       " VALUES ('fraud', 'v1', %s, 0, 0)", (detector,))  # fmt: skip
    store = PostgresStore(fresh)
    try:
        check_migrated(store, A, start, TimeView.ARRIVAL)
    finally:
        store.close()


def test_the_store_process_gets_its_url_out_of_sight_of_other_users(fresh: str) -> None:
    """A process's arguments are every local user's to read (ps, /proc/<pid>/cmdline); its
    environment is only its owner's."""
    url = fresh.replace("://postgres@", "://postgres:S3cret@")  # the cluster trusts any password
    assert "S3cret" in url

    async def started() -> tuple[int, bytes, bytes]:
        store = ChildStore(Path("/nonexistent"), url=url)
        try:
            await store.ping()  # starts it
            pid = store.pid
            assert pid is not None
            proc = Path(f"/proc/{pid}")
            return pid, (proc / "cmdline").read_bytes(), (proc / "environ").read_bytes()
        finally:
            await store.close()

    _, arguments, environment = asyncio.run(started())
    assert b"S3cret" not in arguments
    assert f"FEEDBACK_MONITOR_STORE={url}".encode() in environment.split(b"\0")


def backend(connector: PostgresConnector) -> int:
    with connector.reading() as db:
        (pid,) = db.execute("SELECT pg_backend_pid()").fetchone()
    return int(pid)


def test_a_connection_lost_once_the_commit_went_may_have_committed(shared: str) -> None:
    """The database may have committed a transaction whose COMMIT's answer was lost with the
    connection: StoreLost (a 503 that says the write may be stored), not a plain failure (whose
    503 says that nothing was, so that a client without ids would count it twice)."""
    connector = PostgresConnector(shared)
    with psycopg.connect(shared, autocommit=True) as other:

        def lost_at(point: str) -> Exception:
            pid = backend(connector)
            try:
                with connector.transaction() as db:
                    if point == "before the commit":
                        other.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    db.execute("SELECT 1").fetchone()
                    if point == "at the commit":
                        other.execute("SELECT pg_terminate_backend(%s)", (pid,))
            except Exception as error:  # which one is the point
                return error
            raise AssertionError("the transaction outlived its connection")

        assert isinstance(lost_at("at the commit"), StoreLost)
        before = lost_at("before the commit")  # nothing committed: the store's trouble
        assert isinstance(before, psycopg.OperationalError), before
    connector.close()
