"""The shared store: PostgreSQL, written by every replica of the service at once.

The tables and the logic are those of the SQLite store (``sqlite.py``, ``sql.py``), with
PostgreSQL's types; ``drift_events.rowid`` orders events of the same time as SQLite's rowid
does, and ``drift_inbox`` holds outcomes waiting for the drift detectors (``watches.py``).
``schema_version(version)`` holds the number of migrations applied; each start applies the
missing ones in one transaction under an advisory lock, so replicas starting together migrate
once. The store's calls come one at a time, so it keeps one connection, and replaces it at the
next call once it is broken: while the database is down every call fails at once or within
``CONNECT_TIMEOUT`` (``psycopg.OperationalError``, a 503), and the first call after it is back
succeeds. A lock held elsewhere, a statement that runs away or a network that stops answering
fail a call too, after ``LOCK_TIMEOUT``, ``STATEMENT_TIMEOUT`` or ``NETWORK_TIMEOUT``, instead of
holding every write behind it.

Each connection claims a shard of its own (a session advisory lock, let go when it closes), so
replicas add their counts to rows of their own (``sql.py``). A transaction runs in pipeline
mode with its statements prepared (planned once per connection): a commit costs two round
trips and little of the server's time.
"""

import contextlib
import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors, sql
from psycopg.pq import TransactionStatus

from feedback_monitor.errors import StoreLost
from feedback_monitor.store.sql import Contended, Cursor, Database, SQLStore, check_schema

CONNECT_TIMEOUT = 2.0  # seconds a call waits for a connection before it fails (503)
LOCK_TIMEOUT = 5.0  # seconds a statement waits for a lock another session holds
STATEMENT_TIMEOUT = 30.0  # seconds a statement may run (expiring a month of ids, say)
NETWORK_TIMEOUT = 10.0  # seconds unanswered on the connection before it counts as broken
_MIGRATION_LOCK = 0x6664_6D6F_6E69  # pg_advisory_xact_lock key: "fdmoni"
_SHARD_LOCKS = 0x7368  # the first key of the shards' advisory locks ("sh")
_SERIES_LOCK = 0x6664_7365_7269  # pg_advisory_xact_lock key: "fdseri"
_ID_LOCKS = 0x6964  # the first key of the ids' advisory locks ("id")
# The second: an id's hash, to this many (a power of two). Fewer serialise writers that share no
# id (with 64, writers of 20 ids each ran a third slower); each transaction holds at most this
# many, which PostgreSQL's lock table (64 a connection by default) has room for a few of.
_ID_LOCK_KEYS = 1024
SHARDS = 8  # more writers than this share shards: still exact, but they queue for rows

MIGRATIONS = (
    """
    CREATE TABLE confusion (
        model text NOT NULL,
        version text NOT NULL,
        tp bigint NOT NULL,
        tn bigint NOT NULL,
        fp bigint NOT NULL,
        fn bigint NOT NULL,
        predicted bigint NOT NULL DEFAULT 0,
        labelled bigint NOT NULL DEFAULT 0,
        expired bigint NOT NULL DEFAULT 0,
        delay_sum double precision NOT NULL DEFAULT 0,
        scores bytea,
        PRIMARY KEY (model, version)
    );
    CREATE TABLE probe (id integer PRIMARY KEY CHECK (id = 1), at double precision NOT NULL);
    CREATE TABLE label_delays (
        model text NOT NULL,
        version text NOT NULL,
        bucket integer NOT NULL,
        count bigint NOT NULL,
        PRIMARY KEY (model, version, bucket)
    );
    CREATE TABLE outcomes (
        id text PRIMARY KEY,
        model text NOT NULL,
        version text NOT NULL,
        prediction integer NOT NULL,
        actual integer,
        score double precision,
        predicted_at double precision NOT NULL,
        stored_at double precision NOT NULL,
        from_prediction integer NOT NULL
    );
    CREATE INDEX outcomes_by_age ON outcomes (stored_at);
    CREATE TABLE buckets (
        model text NOT NULL,
        version text NOT NULL,
        resolution integer NOT NULL,
        start bigint NOT NULL,
        a_tp bigint NOT NULL, a_tn bigint NOT NULL, a_fp bigint NOT NULL, a_fn bigint NOT NULL,
        p_tp bigint NOT NULL, p_tn bigint NOT NULL, p_fp bigint NOT NULL, p_fn bigint NOT NULL,
        a_scores bytea,
        p_scores bytea,
        PRIMARY KEY (model, version, resolution, start)
    );
    CREATE INDEX buckets_by_age ON buckets (resolution, start);
    CREATE TABLE drift_state (
        model text NOT NULL,
        version text NOT NULL,
        state bytea NOT NULL,
        PRIMARY KEY (model, version)
    );
    CREATE TABLE drift_events (
        model text NOT NULL,
        version text NOT NULL,
        detector text NOT NULL,
        at double precision NOT NULL,
        statistic double precision NOT NULL,
        rowid bigint GENERATED ALWAYS AS IDENTITY
    );
    CREATE INDEX drift_events_by_series ON drift_events (model, version, at);
    """,
    # Rows per writer's shard; the drift inbox; each series' detections counted once.
    """
    ALTER TABLE confusion ADD COLUMN shard integer NOT NULL DEFAULT 0;
    ALTER TABLE confusion DROP CONSTRAINT confusion_pkey;
    ALTER TABLE confusion ADD PRIMARY KEY (model, version, shard);
    ALTER TABLE label_delays ADD COLUMN shard integer NOT NULL DEFAULT 0;
    ALTER TABLE label_delays DROP CONSTRAINT label_delays_pkey;
    ALTER TABLE label_delays ADD PRIMARY KEY (model, version, bucket, shard);
    ALTER TABLE buckets ADD COLUMN shard integer NOT NULL DEFAULT 0;
    ALTER TABLE buckets DROP CONSTRAINT buckets_pkey;
    ALTER TABLE buckets ADD PRIMARY KEY (model, version, resolution, start, shard);
    CREATE TABLE drift_inbox (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        model text NOT NULL,
        version text NOT NULL,
        tp bigint NOT NULL,
        tn bigint NOT NULL,
        fp bigint NOT NULL,
        fn bigint NOT NULL,
        at double precision NOT NULL
    );
    CREATE INDEX drift_inbox_by_series ON drift_inbox (model, version, id);
    ALTER TABLE drift_state ADD COLUMN detections bytea NOT NULL DEFAULT convert_to('{}', 'UTF8');
    UPDATE drift_state SET detections = convert_to(coalesce((
        SELECT json_object_agg(detector, n)::text FROM (
            SELECT detector, count(*) AS n FROM drift_events AS e
            WHERE e.model = drift_state.model AND e.version = drift_state.version
            GROUP BY detector
        ) AS counted
    ), '{}'), 'UTF8');
    """,
)


@functools.cache
def _placeholders(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s``."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Claimed(psycopg.Connection[Any]):
    """A connection and the shard it claimed."""

    shard = 0


def _claim(connection: _Claimed) -> None:
    """Claim the first shard no other connection holds; if all are taken, share one."""
    for shard in range(SHARDS):
        row = connection.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", (_SHARD_LOCKS, shard), prepare=False
        ).fetchone()
        if row is not None and row[0]:
            connection.shard = shard
            return
    connection.shard = connection.info.backend_pid % SHARDS


class _Connection:
    """A psycopg connection that takes the store's SQL."""

    def __init__(
        self, connection: psycopg.Connection[Any], pipeline: psycopg.Pipeline | None = None
    ) -> None:
        self._connection = connection
        self._pipeline = pipeline

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        if parameters:
            return self._connection.execute(_placeholders(sql), parameters)
        # Transaction control and the like: taken as written, never prepared. psycopg forgets
        # its prepared statements when it sees a ROLLBACK's (or DDL's) result and sends
        # DEALLOCATE ALL after the next statement; in a pipeline it sees the result late, after
        # statements under the old names went out (psycopg 3.3). So a ROLLBACK TO SAVEPOINT is
        # seen at once, and the unprepared RELEASE that follows it carries the DEALLOCATE.
        cursor = self._connection.execute(sql, prepare=False)
        if self._pipeline is not None and sql.startswith("ROLLBACK"):
            self._pipeline.sync()
        return cursor

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> None:
        with self._connection.cursor() as cursor:
            cursor.executemany(_placeholders(sql), rows)


class PostgresConnector:
    """Connections from a pool of one: the store's calls come one at a time."""

    retryable: tuple[type[Exception], ...] = (
        errors.DeadlockDetected,
        errors.SerializationFailure,
        Contended,
    )
    shared = True
    shard = 0  # of the transaction in hand

    def __init__(self, url: str, timeout: float = CONNECT_TIMEOUT) -> None:
        self._url, self._timeout = url, timeout
        self._connection: _Claimed | None = None
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    @contextlib.contextmanager
    def _connected(self) -> Iterator[_Claimed]:
        """The connection, made anew if there is none or it broke (the database went away)."""
        if self._connection is None or self._connection.broken or self._connection.closed:
            self.close()
            self._connection = connect(self._url, self._timeout)
        connection = self._connection
        try:
            yield connection
        finally:
            if connection.broken:  # a failure of the connection, not of the transaction
                self.close()

    def _migrate(self) -> None:
        # Not in a pipeline, where psycopg would take its DDL's results late (see _Connection).
        with self._connected() as connection, connection.transaction():
            db = _Connection(connection)
            db.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            # Created only where missing: CREATE TABLE IF NOT EXISTS needs the CREATE privilege
            # even when the table exists, which a role kept to reading and writing data lacks.
            (table,) = db.execute("SELECT to_regclass('schema_version')").fetchone()
            if table is None:
                db.execute("CREATE TABLE schema_version (version integer NOT NULL)")
            row = db.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            check_schema(current, len(MIGRATIONS))
            for migration in MIGRATIONS[current:]:
                for statement in filter(str.strip, migration.split(";")):  # one at a time
                    db.execute(statement)
            if current < len(MIGRATIONS):
                db.execute("DELETE FROM schema_version")
                db.execute("INSERT INTO schema_version VALUES (?)", (len(MIGRATIONS),))

    def lock_ids(self, db: Database, ids: Sequence[str]) -> None:
        # Transaction-level advisory locks on the ids' hashes, in order. A hash that two ids
        # share only makes their writers take turns; a lock per id filled the server's lock
        # table with a few concurrent batches of 5,000 ids.
        db.execute(
            "SELECT pg_advisory_xact_lock(?, key) FROM (SELECT DISTINCT"
            f" (hashtextextended(id, 0) & {_ID_LOCK_KEYS - 1})::int AS key"
            " FROM unnest(?::text[]) AS id ORDER BY key) AS keys",
            (_ID_LOCKS, list(ids)),
        )

    def lock_series(self, db: Database) -> None:
        db.execute("SELECT pg_advisory_xact_lock(?)", (_SERIES_LOCK,))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Database]:
        # Pipeline mode: statements are sent without waiting for the answers of those before;
        # a transaction waits only where it reads (sql.py reads once) and for its COMMIT.
        with self._connected() as connection:
            self.shard = connection.shard
            committing = False
            try:
                with connection.pipeline() as pipeline:
                    connection.execute("BEGIN", prepare=False)
                    yield _Connection(connection, pipeline)
                    committing = True
                    connection.execute("COMMIT", prepare=False)
            except BaseException as error:
                _roll_back(connection)
                if committing and connection.broken:  # the server may have committed it
                    raise StoreLost(f"connection lost during the commit: {error}") from error
                raise

    @contextlib.contextmanager
    def reading(self) -> Iterator[Database]:
        with self._connected() as connection:
            yield _Connection(connection)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def connect(url: str, timeout: float = CONNECT_TIMEOUT) -> _Claimed:
    """A connection as the store uses it: BEGIN and COMMIT are ours, every statement is
    prepared (planned once), the timeouts are set, and a shard is claimed."""
    connection = _Claimed.connect(
        url,
        autocommit=True,
        prepare_threshold=0,
        connect_timeout=max(1, round(timeout)),
        options=f"-c lock_timeout={LOCK_TIMEOUT * 1000:.0f}"
        f" -c statement_timeout={STATEMENT_TIMEOUT * 1000:.0f}",
        keepalives=1,
        keepalives_idle=max(1, round(NETWORK_TIMEOUT / 2)),
        keepalives_interval=1,
        keepalives_count=max(1, round(NETWORK_TIMEOUT / 2)),
        tcp_user_timeout=round(NETWORK_TIMEOUT * 1000),
    )
    try:
        _claim(connection)
    except BaseException:
        connection.close()
        raise
    return connection


class NotPermitted(Exception):
    """The database's role may not create or migrate the store's tables."""


def check_database(url: str) -> None:
    """Connect and migrate as the store does when it opens (idempotent, under the advisory
    lock), so that what would stop the store stops the server's start instead, said in its
    first line: ``psycopg.Error``, ``NewerSchema``, ``NotPermitted``."""
    try:
        PostgresConnector(url).close()
    except errors.InsufficientPrivilege as error:
        raise NotPermitted(_what_to_grant(url, error)) from error


def _what_to_grant(url: str, error: errors.InsufficientPrivilege) -> str:
    reason = error.diag.message_primary or str(error)
    if reason.startswith("must be owner"):  # an upgrade's migration alters the owner's tables
        return (
            f"the store's schema needs a migration its tables' owner must run ({reason}):"
            " start this version once with the owner's URL, then with this role again"
        )
    with connect(url) as connection:
        ((role, schema),) = connection.execute("SELECT current_user, current_schema()").fetchall()
        grant = sql.SQL("GRANT CREATE ON SCHEMA {} TO {}").format(
            sql.Identifier(schema), sql.Identifier(role)
        )
        advice = grant.as_string(connection)
    return (
        f"role {role} may not create the store's tables ({error.diag.message_primary}):"
        f" have the database's owner run {advice}, or give the store the owner's role"
    )


def _roll_back(connection: psycopg.Connection[Any]) -> None:
    """End a failed transaction, if the connection still can (else it is replaced)."""
    if connection.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        with contextlib.suppress(psycopg.Error):
            connection.rollback()


class PostgresStore(SQLStore):
    """The store in the PostgreSQL database at ``url`` (``postgresql://...``)."""

    def __init__(self, url: str, timeout: float = CONNECT_TIMEOUT) -> None:
        super().__init__(PostgresConnector(url, timeout))
