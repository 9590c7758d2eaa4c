"""The feedback-monitor command: serve the service, replay history into it, report on a series."""

import argparse
import gc
import os
import signal
import socket
import sqlite3
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import psycopg.conninfo
import pydantic
import uvicorn

from feedback_monitor import __version__, logs, replay, report
from feedback_monitor.app import create_app
from feedback_monitor.auth import TOKEN_VARIABLE, URL_VARIABLE
from feedback_monitor.protocol import with_header_timeout
from feedback_monitor.settings import Settings, shown_defaults
from feedback_monitor.store.postgres import NotPermitted, check_database
from feedback_monitor.store.sql import NewerSchema
from feedback_monitor.store.sqlite import FILENAME as SQLITE_FILENAME
from feedback_monitor.store.sqlite import SQLiteStore

PROG = "feedback-monitor"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service")
    # No defaults here: an absent flag leaves the value to the environment, then to Settings.
    defaults = shown_defaults()
    for field, info in Settings.model_fields.items():
        switch: dict[str, Any] = {}
        if info.annotation is bool:  # a bare flag turns it on
            switch = {"nargs": "?", "const": "true", "metavar": "true|false"}
        shown = "unset" if (default := defaults[field]) is None else default or "empty"
        described = f"{info.description} Default: {shown}; environment: {_variable(field)}."
        serve.add_argument(
            _flag(field), dest=field, default=None, help=described.replace("%", "%%"), **switch
        )
    report.add_parser(commands)
    replay.add_parser(commands)
    return parser


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    raise SystemExit(2)


def load_settings(overrides: dict[str, Any]) -> Settings:
    """Settings from the flags given, then ``FEEDBACK_MONITOR_*``, then defaults; or exit 2."""
    known = {_variable(field) for field in Settings.model_fields} | {TOKEN_VARIABLE, URL_VARIABLE}
    prefix = _variable("")
    for name in sorted(n for n in os.environ if n.startswith(prefix) and n not in known):
        sys.stderr.write(f"{PROG}: warning: {name} is no setting: ignored (a misspelling?)\n")
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        if not first["loc"]:  # a rule across settings
            _fail(f"invalid settings: {first['msg']}")
        name, field = ".".join(str(part) for part in first["loc"]), str(first["loc"][0])
        given = _flag(field) if overrides.get(field) is not None else _variable(field)
        message = str(first["msg"]).removeprefix("Value error, ")
        _fail(f"invalid setting {name} ({given}): {message}")


def server_stack(header_timeout: float) -> dict[str, Any]:
    """uvicorn's options for the service's server stack (also the bench's bare ceiling's)."""
    return {
        "loop": "uvloop",
        "http": with_header_timeout(header_timeout),
        "access_log": False,  # every rejection and error is logged by the app itself
        "server_header": False,
        "proxy_headers": False,  # no client address is used; saves a middleware per request
    }


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _variable(name: str) -> str:
    return f"{PROG.upper().replace('-', '_')}_{name.upper()}"


def check_store(settings: Settings) -> None:
    """Open the store once before serving, as its process will, so that a data dir or a
    database that cannot be opened is one line that says why and exit 2, not a failed start
    with the store process's tracebacks."""
    if settings.store:
        _check_database(settings.store)
    else:
        _check_data_dir(settings.data_dir)


def _check_database(url: str) -> None:
    given = _given("store")
    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError as error:  # a value libpq cannot read
        _fail(f"invalid setting store ({given}): {_hide_url(_first_line(error), url)}")
    try:
        check_database(url)
    except (psycopg.Error, NewerSchema, NotPermitted) as error:
        _fail(f"cannot open the store ({given}): {_hide_url(_first_line(error), url)}")


def _hide_url(reason: str, url: str) -> str:
    """``reason`` without the URL, which may hold a password, nor the password as libpq quotes
    it alone."""
    reason = reason.replace(url, "the store's URL")
    if password := _password(url):
        reason = reason.replace(f'"{password}"', '"(the password)"')
    return reason


def _check_data_dir(data_dir: Path) -> None:
    try:
        SQLiteStore(data_dir).close()
    except (OSError, sqlite3.Error, NewerSchema) as error:
        reason = _data_dir_trouble(data_dir, error)
        _fail(f"cannot open the store in data_dir {data_dir} ({_given('data_dir')}): {reason}")


def _data_dir_trouble(data_dir: Path, error: Exception) -> str:
    """Why the SQLite store did not open, and what to do: SQLite's own message often names
    the wrong cause ("disk I/O error" for a directory it may not create its log in)."""
    if getattr(error, "sqlite_errorcode", 0) & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return (
            f"another process holds {SQLITE_FILENAME}, another feedback-monitor server on this"
            " data_dir most likely: stop it, or give each server a data_dir of its own"
        )
    if not isinstance(error, NewerSchema) and (denied := _access_trouble(data_dir)):
        return f"{denied}: make it writable for this user, or choose another data_dir"
    return _first_line(error)


def _access_trouble(data_dir: Path) -> str:
    """What the store needs in ``data_dir`` that this user may not do, and why; empty if none."""
    for path, name, mode in _needs(data_dir):
        if trouble := _denied(path, mode):
            return f"{name} is {trouble}"
    return ""


def _needs(data_dir: Path) -> list[tuple[Path, str, int]]:
    """What the store needs to be allowed (an ``os.access`` mode), and how to name it: to
    create files in its directory (or to create that), to read and write its own."""
    if not data_dir.exists():
        parent = next((path for path in data_dir.parents if path.exists()), data_dir.parent)
        return [(parent, f"{parent}, where it is to be created,", os.W_OK | os.X_OK)]
    files = (SQLITE_FILENAME, f"{SQLITE_FILENAME}-wal")
    mine = [(data_dir / name, name, os.R_OK | os.W_OK) for name in files]
    return [(data_dir, "the directory", os.W_OK | os.X_OK), *mine]


def _denied(path: Path, mode: int) -> str:
    """Why this user may not use ``path`` as ``mode`` (os.access's) asks; empty if it may."""
    if not path.exists() or os.access(path, mode):
        return ""
    if os.statvfs(path).f_flag & os.ST_RDONLY:
        return "on a read-only file system"
    return f"not writable by this user (uid {os.geteuid()})"


def _first_line(error: Exception) -> str:
    return (str(error).strip() or type(error).__name__).splitlines()[0]


def _given(name: str) -> str:
    """Where a setting checked after it was read may have come from: either."""
    return f"{_flag(name)}, {_variable(name)}"


def check_address(settings: Settings) -> None:
    """Listen on the address once before serving, so that one taken or not this machine's is one
    line and exit 2, not a service that starts and then fails to listen."""
    try:
        family = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM)[0][0]
        with socket.create_server((settings.host, settings.port), family=family):
            pass
    except OSError as error:  # socket.gaierror too
        where = f"{settings.host}:{settings.port}"
        _fail(f"cannot listen on {where} (--host, --port): {error.strerror or error}")


def _password(url: str) -> str:
    """The password in a URL's user part, as written (not decoded: libpq quotes it so)."""
    try:
        return urllib.parse.urlsplit(url).password or ""
    except ValueError:  # no URL (an unclosed [): libpq quotes none of it
        return ""


def serve(settings: Settings) -> None:
    logs.configure(settings.log_level, settings.log_format)
    check_address(settings)
    check_store(settings)
    # The store's process inherits our environment: so it logs as we do, flags or not.
    os.environ.update(logs.variables(settings.log_level, settings.log_format))
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_config=None,
        timeout_graceful_shutdown=settings.shutdown_timeout,
        **server_stack(settings.header_timeout),
    )
    # uvicorn drains and then re-raises the signal under the handler it found installed; with
    # these no-op handlers a completed graceful shutdown exits 0 instead of dying by SIGTERM.
    for captured in (signal.SIGTERM, signal.SIGINT):
        signal.signal(captured, lambda number, frame: None)
    # What start-up made (modules, the app) lives as long as the process: kept out of the
    # collector's reach, a full collection no longer walks it. It had paused the server about
    # 25 ms at the p99 of single POST /predictions, and cost 15% of their rate.
    gc.freeze()
    uvicorn.Server(config).run()


def main(argv: Sequence[str] | None = None) -> None:
    arguments = vars(_parser().parse_args(argv))
    command = arguments.pop("command")
    if command == "serve":
        serve(load_settings(arguments))
    elif command == "report" and (status := report.run(argparse.Namespace(**arguments))):
        raise SystemExit(status)
    elif command == "replay":
        raise SystemExit(replay.run(argparse.Namespace(**arguments)))
