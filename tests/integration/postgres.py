"""A throwaway PostgreSQL cluster (Debian ``postgresql``): initdb in a temporary directory, the
server on a free loopback port, everything removed afterwards.

PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user. On a
machine without PostgreSQL the tests that need it skip, except in CI (``CI=true``), where they
fail: there it is installed, and a test that cannot start it has found a problem.
"""

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Self

import psycopg
import pytest

from feedback_monitor.testing import free_port

# Short enough that a deadlock between replicas costs a test little; logged to the cluster's log.
SETTINGS = ("-c", "deadlock_timeout=100ms", "-c", "max_connections=60")


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_major)
    return Path(found[-1]).parent if found else None


def _major(path: str) -> int:
    return int(Path(path).parent.parent.name)


class Cluster:
    """A cluster of its own (see ``cluster()``); ``url`` is of its ``postgres`` database."""

    def __init__(self) -> None:
        bin_dir = binaries()
        if bin_dir is None:
            unavailable("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = bin_dir or Path()
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="feedback-monitor-pg-"))
        self.data = self.root / "data"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._user = "postgres" if os.geteuid() == 0 else None

    def _run(self, *command: str) -> None:
        prefix: Sequence[str] = ("runuser", "-u", self._user, "--") if self._user else ()
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=60)

    def start(self) -> Self:
        if self._user:
            user = pwd.getpwnam(self._user)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8")  # fmt: skip
        self.server("start")
        return self

    def server(self, action: str) -> None:
        """``start`` or ``stop`` (fast: connections are cut) the server, and wait for it."""
        options = ["-p", str(self.port), "-k", str(self.root), "-c", "listen_addresses=127.0.0.1"]
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-m", "fast",
                  "-l", str(self.root / "server.log"), "-o", " ".join([*options, *SETTINGS]),
                  action)  # fmt: skip

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url, autocommit=True)

    def database(self, name: str) -> str:
        """A new empty database's URL."""
        with self.connect() as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + "/" + name

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.root / "server.log").read_text()[-2000:]
        return ""

    def remove(self) -> None:
        """Stop the server if it runs, and delete the cluster."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError):
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                          "-w", "stop")  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)


def unavailable(reason: str) -> None:
    """Skip the test; fail it in CI, where PostgreSQL must be there."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """A started cluster, removed afterwards; skipped (failed in CI) if it cannot start."""
    started = Cluster()
    try:
        try:
            started.start()
        except (OSError, subprocess.SubprocessError) as error:
            unavailable(f"PostgreSQL did not start: {error!r}: {started.log()}")
        yield started
    finally:
        started.remove()
