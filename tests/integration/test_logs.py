"""Structured logs: one JSON object a line, the store process's too; every rejected request logged
with its reason."""

import json
import logging
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from feedback_monitor import logs
from feedback_monitor.store.sqlite import FILENAME
from tests.integration.helpers import process_tree, serving, wait_until

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json"}

# (method, path, body, headers, status, what the log record must say)
REJECTIONS = [
    ("POST", "/feedback", b'{"prediction": 2, "actual": 1}', JSON, 400, "Values must be 0 or 1"),
    ("POST", "/feedback", b'{"actual": 1}', JSON, 400, "Missing required fields"),
    ("POST", "/feedback", b"[1, 1]", JSON, 400, None),
    ("POST", "/feedback", b'{"prediction": 1, "actual": 1}', {}, 415, None),
    ("POST", "/feedback", b" " * (1024 * 1024 + 1), JSON, 413, None),
    ("GET", "/nope", b"", {}, 404, "/nope"),
    ("DELETE", "/feedback", b"", {}, 405, "DELETE /feedback"),
]


def records(log_path: Path) -> list[dict[str, Any]]:
    lines = log_path.read_text().splitlines()
    parsed = [json.loads(line) for line in lines]
    assert all(isinstance(record, dict) for record in parsed)
    return parsed


def test_json_logs_one_object_a_line_and_every_rejection_with_its_reason(
    tmp_path: Path, log_path: Path
) -> None:
    said: list[str] = []
    with (
        serving(tmp_path / "data", "--log-format", "json", log_path=log_path) as service,
        httpx.Client(base_url=service.url, timeout=10.0) as client,
    ):
        assert client.post("/feedback", json={"prediction": 1, "actual": 1}).status_code == 200
        for method, path, body, headers, status, text in REJECTIONS:
            response = client.request(method, path, content=body, headers=headers)
            assert response.status_code == status
            said.append(text or response.json()["error"])  # the reason the client was given
        wanted = len(REJECTIONS)
        # Counted on the raw text: a line being written may not parse yet.
        wait_until(lambda: log_path.read_text().count("rejected") >= wanted, what="the logs")
        service.terminate()
    logged = rejections(records(log_path))  # every line of the whole run parses
    assert len(logged) == wanted
    for record, (method, _, _, _, status, _), reason in zip(logged, REJECTIONS, said, strict=True):
        assert record["level"] in ("INFO", "WARNING")
        assert method in record["message"]
        assert str(status) in record["message"]
        assert reason in record["message"]


def rejections(logged: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [record for record in logged if "rejected" in record["message"]]


def test_json_log_fields(tmp_path: Path, log_path: Path) -> None:
    with serving(tmp_path / "data", "--log-format", "json", log_path=log_path) as service:
        service.terminate()
    logged = records(log_path)
    assert logged
    for record in logged:
        assert {"asctime", "level", "name", "message"} <= set(record)
        assert logging.getLevelName(record["level"]) in range(logging.DEBUG, logging.CRITICAL + 1)


def test_text_logs_every_rejection_with_its_reason(client: httpx.Client, log_path: Path) -> None:
    response = client.post("/feedback", json={"prediction": 1.0, "actual": 1})
    assert response.status_code == 400

    def logged() -> list[str]:
        return [line for line in log_path.read_text().splitlines() if "rejected" in line]

    wait_until(lambda: len(logged()) == 1, what="the rejection in the log")
    (line,) = logged()
    assert line.split()[2] in ("INFO", "WARNING")
    assert "Values must be 0 or 1" in line


def test_a_path_cannot_forge_a_log_line_nor_send_escape_codes(
    client: httpx.Client, log_path: Path
) -> None:
    forged = "/x%0A2026-11-29%2007:00:00,000%20ERROR%20%20%20feedback_monitor.app:%20FAKE%1B%5B2J"
    assert client.get(forged).status_code == 404

    def logged() -> list[str]:
        return [line for line in log_path.read_text().splitlines() if "FAKE" in line]

    wait_until(lambda: len(logged()) == 1, what="the rejection in the log")
    (line,) = logged()  # one line, the rejection's
    assert "rejected GET /x" in line
    assert line.endswith("FAKE\\x1b[2J: 404 not_found")
    assert "\x1b" not in log_path.read_text()


def test_the_store_process_logs_in_json_as_the_flag_told_the_server(
    tmp_path: Path, log_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its traceback was raw lines among the JSON, and the only place that said why it failed."""
    monkeypatch.delenv(logs.FORMAT_VARIABLE, raising=False)  # the flag alone tells the server
    data = tmp_path / "data"
    with (
        serving(data, "--log-format", "json", log_path=log_path) as service,
        httpx.Client(base_url=service.url, timeout=10.0) as client,
    ):
        (data / FILENAME).rename(data / "moved")
        (data / FILENAME).mkdir()  # the store process started next cannot open it
        (store,) = set(process_tree(service.pid)) - {service.pid}
        os.kill(store, signal.SIGKILL)
        assert client.post("/feedback", json={"prediction": 1, "actual": 1}).status_code == 503

        def logged() -> bool:
            # A write sent before the server saw its store process die fails with it and starts
            # none: the next write starts one, which cannot open the file and logs why.
            if "unable to open database file" in log_path.read_text():
                return True
            assert client.post("/feedback", json={"prediction": 1, "actual": 1}).status_code == 503
            return False

        wait_until(logged, what="the store process's failure in the log", every=0.2)
        service.terminate()
    failed = [r for r in records(log_path) if r["name"] == "feedback_monitor.store.child"]
    assert "the store process failed" in failed[0]["message"]
    assert "unable to open database file" in failed[0]["exc_info"]
