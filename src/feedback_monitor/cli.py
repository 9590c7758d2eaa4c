"""The ``feedback-monitor`` command: ``serve`` now; ``replay`` and ``report`` later."""

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import pydantic
import uvicorn
from pydantic_settings import SettingsError

from feedback_monitor import __version__, logs, replay, report
from feedback_monitor.app import create_app
from feedback_monitor.protocol import with_header_timeout
from feedback_monitor.settings import Settings

PROG = "feedback-monitor"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service")
    # No defaults here: an absent flag leaves the value to the environment, then to Settings.
    for field, info in Settings.model_fields.items():
        flag = "--" + field.replace("_", "-")
        switch: dict[str, Any] = {"nargs": "?", "const": "true"} if info.annotation is bool else {}
        serve.add_argument(flag, dest=field, default=None, help=info.description, **switch)
    report.add_parser(commands)
    replay.add_parser(commands)
    return parser


def _fail(message: str) -> NoReturn:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    raise SystemExit(2)


def load_settings(overrides: dict[str, Any]) -> Settings:
    """Settings from the flags given, then ``FEEDBACK_MONITOR_*``, then defaults; or exit 2."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        if not first["loc"]:  # a rule across settings
            _fail(f"invalid settings: {first['msg']}")
        name = ".".join(str(part) for part in first["loc"])
        variable = f"{PROG.upper().replace('-', '_')}_{str(first['loc'][0]).upper()}"
        _fail(f"invalid setting {name} ({variable}): {first['msg']}")
    except SettingsError as error:  # an environment value pydantic-settings could not read
        _fail(f"invalid settings: {error}")


def server_stack(header_timeout: float) -> dict[str, Any]:
    """uvicorn's options for the service's server stack (also the bench's bare ceiling's)."""
    return {
        "loop": "uvloop",
        "http": with_header_timeout(header_timeout),
        "access_log": False,  # every rejection and error is logged by the app itself
        "server_header": False,
        "proxy_headers": False,  # no client address is used; saves a middleware per request
    }


def serve(settings: Settings) -> None:
    logs.configure(settings.log_level, settings.log_format)
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        _fail(f"invalid setting data_dir ({PROG.upper().replace('-', '_')}_DATA_DIR): {error}")
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_config=None,
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
