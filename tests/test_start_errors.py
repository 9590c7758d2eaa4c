"""A store the server cannot use stops its start with one line that names the cause and what to
do, and exit status 2; tried for real, as a user that file permissions apply to."""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from feedback_monitor.confusion import Counts
from feedback_monitor.store.postgres import MIGRATIONS, NotPermitted, PostgresStore, check_database
from feedback_monitor.store.sqlite import FILENAME, SQLiteStore
from tests.integration import postgres

PREFIX = "FEEDBACK_MONITOR_"


def unprivileged() -> list[str]:
    """The command prefix that runs a program as this user, bound by file permissions: root
    keeps its uid but drops the capabilities that let it past them."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root without setpriv (util-linux) cannot drop its capabilities")
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"]


def refused(*flags: str) -> str:
    """The one line of ``serve`` with ``flags``, run unprivileged, which must exit 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    command = [sys.executable, "-m", "feedback_monitor", "serve", "--port", "0", *flags]
    done = subprocess.run(
        [*unprivileged(), *command], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("feedback-monitor: error: cannot open the store"), line
    return line


def not_writable(name: str) -> str:
    return f"{name} is not writable by this user (uid {os.geteuid()})"


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data dir that held a store; its permissions are put back for the clean-up."""
    SQLiteStore(tmp_path / "data").close()
    yield tmp_path / "data"
    (tmp_path / "data").chmod(0o700)


def test_a_read_only_directory_holding_a_database(data_dir: Path) -> None:
    """It said "disk I/O error": SQLite could not create its log beside the database."""
    data_dir.chmod(0o500)
    line = refused("--data-dir", str(data_dir))
    assert f"data_dir {data_dir} (--data-dir, {PREFIX}DATA_DIR): " in line
    assert not_writable("the directory") in line
    assert "make it writable for this user, or choose another data_dir" in line


def test_a_read_only_database_file(data_dir: Path) -> None:
    (data_dir / FILENAME).chmod(0o400)
    assert not_writable(FILENAME) in refused("--data-dir", str(data_dir))


def test_an_unwritable_empty_directory(data_dir: Path) -> None:
    """It said "unable to open database file"."""
    (data_dir / FILENAME).unlink()
    data_dir.chmod(0o500)
    assert not_writable("the directory") in refused("--data-dir", str(data_dir))


def test_a_directory_to_create_where_it_may_not(data_dir: Path) -> None:
    data_dir.chmod(0o500)
    line = refused("--data-dir", str(data_dir / "new" / "data"))
    assert not_writable(f"{data_dir}, where it is to be created,") in line


def test_a_role_that_may_not_create_the_tables_is_told_what_to_grant(tmp_path: Path) -> None:
    """It was the store process's traceback, "Application startup failed" and exit 3: on
    PostgreSQL 15 a role that does not own the database may not create tables in public."""
    with postgres.cluster() as cluster:
        with cluster.connect() as db:
            db.execute("CREATE ROLE monitor LOGIN")
        owners = cluster.database("feedback")
        url = owners.replace("//postgres@", "//monitor@")
        line = refused("--data-dir", str(tmp_path), "--store", url)
        assert f"(--store, {PREFIX}STORE): role monitor may not create the store's tables" in line
        assert "(permission denied for schema public)" in line
        grant = 'GRANT CREATE ON SCHEMA "public" TO "monitor"'
        assert grant in line
        with psycopg.connect(owners, autocommit=True) as db:
            db.execute(grant)
        check_database(url)  # the store opens now


def test_a_role_that_may_only_read_and_write_data_opens_a_migrated_store() -> None:
    """The usual production grant: the owner migrates, the service's role gets data privileges
    only. Its start used to fail on CREATE TABLE IF NOT EXISTS, which needs CREATE."""
    with postgres.cluster() as cluster:
        owners = cluster.database("feedback")
        check_database(owners)  # migrated by its owner
        with psycopg.connect(owners, autocommit=True) as db:
            db.execute("CREATE ROLE monitor LOGIN")
            db.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public"
                       " TO monitor")  # fmt: skip
        url = owners.replace("//postgres@", "//monitor@")
        check_database(url)
        store = PostgresStore(url)
        try:
            assert store.commit({("m", ""): Counts(tp=1)})[("m", "")].counts == Counts(tp=1)
        finally:
            store.close()


def test_an_upgrade_whose_migration_needs_the_owner_says_so() -> None:
    """A role with CREATE on the schema still may not alter the owner's tables, as an upgrade's
    migration does: the advice is to start once with the owner's URL, not a GRANT it has."""
    with postgres.cluster() as cluster:
        owners = cluster.database("feedback")
        with psycopg.connect(owners, autocommit=True) as db:  # the first schema, by its owner
            db.execute("CREATE TABLE schema_version (version integer NOT NULL)")
            db.execute("INSERT INTO schema_version VALUES (1)")
            for statement in filter(str.strip, MIGRATIONS[0].split(";")):
                db.execute(statement)
            db.execute("CREATE ROLE monitor LOGIN")
            db.execute("GRANT CREATE ON SCHEMA public TO monitor")
            db.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public"
                       " TO monitor")  # fmt: skip
        url = owners.replace("//postgres@", "//monitor@")
        with pytest.raises(NotPermitted, match="start this version once with the owner's URL"):
            check_database(url)
        check_database(owners)  # the owner migrates it
        check_database(url)  # and the role opens it then
