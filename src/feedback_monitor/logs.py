"""Logging set-up: human-readable text, or one JSON object a line."""

import logging
import re
import sys

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from feedback_monitor.settings import LogFormat, LogLevel

_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class TextFormatter(logging.Formatter):
    """A line per message, its control characters escaped: a client's path or name in it cannot
    forge a line of its own nor send a terminal its escape codes. A traceback follows as is."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = _CONTROL.sub(lambda c: ascii(c.group())[1:-1], record.message)
        return super().formatMessage(record)


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
