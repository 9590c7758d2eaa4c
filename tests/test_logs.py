"""The text log: a line per message, whatever a client put in it; a traceback as lines. The
store process's logging, told by the server through the environment."""

import logging
import os
from collections.abc import Iterator

import pytest
from pythonjsonlogger.json import JsonFormatter

from feedback_monitor import logs
from feedback_monitor.logs import TextFormatter
from feedback_monitor.settings import LogFormat, LogLevel, Settings


@pytest.mark.parametrize(
    ("sent", "written"),
    [
        ("/x\n2026-11-29 ERROR fake", "/x\\n2026-11-29 ERROR fake"),
        ("/x\r\x1b[2J\x1b[31mred", "/x\\r\\x1b[2J\\x1b[31mred"),
        ("/x\u2028y\x85z\x00", "/x\\u2028y\\x85z\\x00"),
        ("/caf\u00e9 \u20ac", "/caf\u00e9 \u20ac"),  # printable text as it is
    ],
)
def test_a_clients_text_stays_on_its_line(sent: str, written: str) -> None:
    record = logging.LogRecord("app", logging.INFO, __file__, 1, "rejected %s", (sent,), None)
    assert TextFormatter().format(record).endswith(f"app: rejected {written}")


def test_a_traceback_follows_its_message_as_it_is() -> None:
    try:
        raise ValueError("line one\nline two")
    except ValueError as error:
        info = (type(error), error, error.__traceback__)
    record = logging.LogRecord("app", logging.ERROR, __file__, 1, "bug", (), info)
    text = TextFormatter().format(record)
    assert text.splitlines()[1] == "Traceback (most recent call last):"
    assert text.endswith("ValueError: line one\nline two")


UVICORN_STARTUP_FAILURE = (  # as Starlette hands it to uvicorn, which logs it as the message
    "Traceback (most recent call last):\n"
    '  File "app.py", line 9, in lifespan\n'
    "    await recorder.start()\n"
    "StoreLost: store process stopped answering\n"
)


def test_a_traceback_logged_as_the_message_stays_lines() -> None:
    record = logging.LogRecord(
        "uvicorn.error", logging.ERROR, __file__, 1, UVICORN_STARTUP_FAILURE, (), None
    )
    text = TextFormatter().format(record)
    lines = text.split("\n")
    assert lines[0].endswith("uvicorn.error: Traceback (most recent call last):")
    assert lines[1:] == UVICORN_STARTUP_FAILURE.splitlines()[1:]  # and no blank line after


@pytest.mark.parametrize("message", ["%s", "rejected %s"])
def test_a_clients_text_like_a_traceback_stays_on_its_line(message: str) -> None:
    sent = "Traceback (most recent call last):\n2026-11-29 ERROR fake"
    record = logging.LogRecord("app", logging.INFO, __file__, 1, message, (sent,), None)
    assert len(TextFormatter().format(record).splitlines()) == 1


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger, its handlers and level put back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("log_format", list(LogFormat))
def test_a_child_process_logs_as_the_variables_handed_to_it_say(
    log_format: LogFormat, root_logging: logging.Logger
) -> None:
    logs.configure_from(logs.variables(LogLevel.WARNING, log_format))
    (handler,) = root_logging.handlers
    expected = JsonFormatter if log_format is LogFormat.JSON else TextFormatter
    assert type(handler.formatter) is expected
    assert root_logging.level == logging.WARNING


def test_a_child_process_told_nothing_logs_as_the_defaults(root_logging: logging.Logger) -> None:
    logs.configure_from({logs.LEVEL_VARIABLE: "loud", logs.FORMAT_VARIABLE: "xml"})
    (handler,) = root_logging.handlers
    assert type(handler.formatter) is TextFormatter
    assert root_logging.level == logging.INFO


def test_the_variables_are_the_settings_own(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("FEEDBACK_MONITOR_")]:
        monkeypatch.delenv(name)  # the machine's settings
    for name, value in logs.variables(LogLevel.ERROR, LogFormat.JSON).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.log_level, settings.log_format) == (LogLevel.ERROR, LogFormat.JSON)
