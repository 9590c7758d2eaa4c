"""The text log: a line per message, whatever a client put in it."""

import logging

import pytest

from feedback_monitor.logs import TextFormatter


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
