"""The feedback-monitor command: serve the service, replay history into it, report on a series."""

import argparse
import os
import signal
import socket
import sqlite3
import sys
import urllib.parse
from collections.abc import Sequence
from typing import Any, NoReturn

import psycopg
import pydantic
import uvicorn

from feedback_monitor import __version__, logs, replay, report
from feedback_monitor.app import create_app
from feedback_monitor.auth import TOKEN_VARIABLE, URL_VARIABLE
from feedback_monitor.protocol import with_header_timeout
from feedback_monitor.settings import Settings, shown_defaults
from feedback_monitor.store.sql import NewerSchema
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
    """Open the store once before serving, so that a data dir or a database that cannot be
    opened is one line and exit 2, not a failed start with the store process's tracebacks."""
    name = "store" if settings.store else "data_dir"
    try:
        if settings.store:  # a plain connection: its error says why
            from feedback_monitor.store.postgres import check_database  # as the store's child

            check_database(settings.store)
        else:
            SQLiteStore(settings.data_dir).close()
    except (OSError, sqlite3.Error, psycopg.Error, NewerSchema) as error:
        reason = (str(error).strip() or type(error).__name__).splitlines()[0]
        if settings.store:  # it may hold a password, which libpq may quote alone
            reason = reason.replace(settings.store, "the store's URL")
            if password := _password(settings.store):  # as libpq quotes it
                reason = reason.replace(f'"{password}"', '"(the password)"')
        given = f"{_flag(name)}, {_variable(name)}"
        _fail(f"invalid setting {name} ({given}): cannot open the store: {reason}")


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
