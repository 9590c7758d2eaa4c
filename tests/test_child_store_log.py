"""The store process's log: records in the server's format on the stderr it shares with the
server, so that with ``--log-format json`` every line of it is a JSON object, tracebacks too."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from feedback_monitor import logs
from feedback_monitor.settings import LogFormat, LogLevel
from feedback_monitor.store.sqlite import FILENAME

CHILD = "feedback_monitor.store.child"


def run_child(data_dir: Path, log_format: LogFormat, requests: str) -> tuple[str, str, int]:
    """The store process on ``data_dir``, told to log as a server with ``log_format`` tells it:
    what it answered to ``requests`` and logged, and its exit status."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDBACK_MONITOR_")}
    env.update(logs.variables(LogLevel.INFO, log_format))
    done = subprocess.run(
        [sys.executable, "-m", CHILD, str(data_dir)],
        input=requests,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout, done.stderr, done.returncode


def json_records(stderr: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in stderr.splitlines()]  # every line parses
    assert records
    assert all(isinstance(record, dict) for record in records)
    return records


def test_a_bug_in_a_request_is_one_json_record_with_its_traceback(tmp_path: Path) -> None:
    out, err, status = run_child(tmp_path, LogFormat.JSON, '["bogus"]\n')
    assert json.loads(out) == ["error", "internal", "ValueError: unknown request ['bogus']"]
    assert status == 0
    (record,) = json_records(err)
    assert (record["level"], record["name"]) == ("ERROR", CHILD)
    assert "unknown request ['bogus']" in record["message"]
    assert record["exc_info"].startswith("Traceback (most recent call last):\n")


def test_a_store_that_cannot_open_is_one_json_record_with_its_traceback(tmp_path: Path) -> None:
    (tmp_path / FILENAME).mkdir()  # SQLite cannot open a directory
    out, err, status = run_child(tmp_path, LogFormat.JSON, "")
    assert out == ""
    assert status == 1
    (record,) = json_records(err)
    assert (record["level"], record["name"]) == ("ERROR", CHILD)
    assert "unable to open database file" in record["message"]
    assert "sqlite3.OperationalError" in record["exc_info"]


def test_in_text_a_bug_is_a_record_line_then_its_traceback(tmp_path: Path) -> None:
    _, err, _ = run_child(tmp_path, LogFormat.TEXT, '["bogus"]\n')
    first, *traceback = err.splitlines()
    assert f"ERROR   {CHILD}: a store request failed: ValueError: unknown request" in first
    assert traceback[0] == "Traceback (most recent call last):"
    assert traceback[-1] == "ValueError: unknown request ['bogus']"


@pytest.mark.parametrize("log_format", list(LogFormat))
def test_a_store_process_that_has_nothing_to_say_says_nothing(
    tmp_path: Path, log_format: LogFormat
) -> None:
    out, err, status = run_child(tmp_path, log_format, '["ping"]\n')
    assert (out, err, status) == ('["ok",null]\n', "", 0)
