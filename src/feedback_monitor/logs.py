"""Logging set-up: human-readable text, or one JSON object a line."""

import logging
import sys

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from feedback_monitor.settings import LogFormat, LogLevel

_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"


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
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
