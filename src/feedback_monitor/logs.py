"""Logging set-up: human-readable text, or one JSON object a line."""

import logging
import re
import sys
from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from feedback_monitor.settings import LogFormat, LogLevel

LEVEL_VARIABLE = "FEEDBACK_MONITOR_LOG_LEVEL"
FORMAT_VARIABLE = "FEEDBACK_MONITOR_LOG_FORMAT"
"""The settings' variables, which also tell the store's process how to log (``configure_from``)."""

_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_TRACEBACK = "Traceback (most recent call last):\n"

_Choice = TypeVar("_Choice", bound=StrEnum)


class TextFormatter(logging.Formatter):
    """A line per message, its control characters escaped: a client's path or name in it cannot
    forge a line of its own nor send a terminal its escape codes. A traceback follows as is,
    also one that is the whole message (as uvicorn logs an application's failed start)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        if _is_traceback(record):
            record.message = record.message.rstrip("\n")  # as a record's own traceback ends
        else:
            record.message = _CONTROL.sub(lambda c: ascii(c.group())[1:-1], record.message)
        return super().formatMessage(record)


def _is_traceback(record: logging.LogRecord) -> bool:
    """Whether the message is a traceback's text and nothing else: no argument can have put a
    client's text in it, and its lines are only readable as lines."""
    return not record.args and record.message.startswith(_TRACEBACK)


def configure(level: LogLevel, log_format: LogFormat) -> None:
    """Send every log record, uvicorn's included, to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format is LogFormat.JSON:
        handler.setFormatter(
            JsonFormatter(
                _FIELDS,
                rename_fields={"levelname": "level"},
                # uvicorn adds an ANSI-coloured copy of its messages; one copy is enough
                reserved_attrs=[*RESERVED_ATTRS, "color_message"],
            )
        )
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def variables(level: LogLevel, log_format: LogFormat) -> dict[str, str]:
    """The environment that has a process started from this one log as ``configure`` was told."""
    return {LEVEL_VARIABLE: level.value, FORMAT_VARIABLE: log_format.value}


def configure_from(environment: Mapping[str, str]) -> None:
    """``configure`` as ``variables`` tell it; the settings' defaults for any unset or unknown."""
    configure(
        _choice(LogLevel, environment.get(LEVEL_VARIABLE, ""), LogLevel.INFO),
        _choice(LogFormat, environment.get(FORMAT_VARIABLE, ""), LogFormat.TEXT),
    )


def _choice(kind: type[_Choice], value: str, default: _Choice) -> _Choice:
    try:
        return kind(value)
    except ValueError:
        return default
