"""The shared store: PostgreSQL, written by every replica of the service at once.

The tables and the logic are those of the SQLite store (``sqlite.py``, ``sql.py``), with
PostgreSQL's types; ``drift_events.rowid`` orders events of the same time as SQLite's rowid
does. ``schema_version(version)`` holds the number of migrations applied; each start applies
the missing ones in one transaction under an advisory lock, so replicas starting together
migrate once. Connections come from a pool (``psycopg_pool``), which replaces a connection the
server dropped: while the database is down every call fails (``psycopg.OperationalError``),
and the first call after it returns succeeds.
"""

import functools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool

from feedback_monitor.store.sql import Contended, Cursor, Database, SQLStore

CONNECT_TIMEOUT = 2.0  # seconds a call waits for a connection before it fails (503)
_MIGRATION_LOCK = 0x6664_6D6F_6E69  # pg_advisory_xact_lock key: "fdmoni"

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
)


@functools.cache
def _placeholders(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s``."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Connection:
    """A psycopg connection that takes the store's SQL."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self._connection = connection

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> Cursor:
        if not parameters:  # nothing to bind: taken as written
            return self._connection.execute(sql)
        return self._connection.execute(_placeholders(sql), parameters)

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

    def __init__(self, url: str, timeout: float = CONNECT_TIMEOUT) -> None:
        self._pool = ConnectionPool(
            url,
            min_size=0,  # connected on demand: the first call after an outage reconnects
            max_size=1,
            # Prepared statements and pipelines trip over each other in psycopg 3.3 ("prepared
            # statement does not exist" after a refused entry): plain statements it is.
            kwargs={"autocommit": True, "prepare_threshold": None},
            open=False,
            timeout=timeout,
            name="feedback-monitor",
        )
        self._pool.open(wait=True, timeout=timeout)
        try:
            self._migrate()
        except BaseException:
            self._pool.close()
            raise

    def _migrate(self) -> None:
        with self.transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
            row = db.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            for migration in MIGRATIONS[current:]:
                for statement in filter(str.strip, migration.split(";")):  # one at a time
                    db.execute(statement)
            if current < len(MIGRATIONS):
                db.execute("DELETE FROM schema_version")
                db.execute("INSERT INTO schema_version VALUES (?)", (len(MIGRATIONS),))

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        # Pipeline mode: statements whose results nobody reads travel with the next one that is
        # read, so a transaction takes a few round trips rather than one per statement.
        with (
            self._pool.connection() as connection,
            connection.pipeline(),
            connection.transaction(),
        ):
            yield _Connection(connection)

    @contextmanager
    def reading(self) -> Iterator[Database]:
        with self._pool.connection() as connection:
            yield _Connection(connection)

    def close(self) -> None:
        self._pool.close()


class PostgresStore(SQLStore):
    """The store in the PostgreSQL database at ``url`` (``postgresql://...``)."""

    def __init__(self, url: str, timeout: float = CONNECT_TIMEOUT) -> None:
        super().__init__(PostgresConnector(url, timeout))
