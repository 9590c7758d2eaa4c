"""Anything unexpected: 500 with the seed's body and the traceback in the log, never a 400.

Real failures, provoked two ways: a store that raises on commit under a real in-process
uvicorn; and the disk refusing every write under a real service (its file size limit set to 0
while it runs), which the service answers as "store unavailable" (503). (A corrupt row can no
longer be planted: the tables are STRICT.)
"""

import contextlib
import json
import logging
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from feedback_monitor.app import create_app
from feedback_monitor.edge import UNAVAILABLE_LOG_EVERY
from feedback_monitor.settings import Settings
from feedback_monitor.testing import ServiceProcess
from tests.integration.helpers import (
    InProcessServer,
    LocalStore,
    PipeLog,
    Samples,
    cell_counts,
    refuse_writes,
    running,
    scrape,
    seed_samples,
    total,
)

pytestmark = pytest.mark.integration

INTERNAL_ERROR = {"error": "Internal server error"}


def assert_server_error(
    response: httpx.Response, before: Samples, after: Samples, status: int = 500
) -> None:
    """A JSON error with ``status``, counted as the service's error; the counts unchanged."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    if status == 500:
        assert response.json() == INTERNAL_ERROR
    assert seed_samples(after) == seed_samples(before)
    route = response.request.url.path
    labels = {"route": route, "outcome": "error", "status": str(status)}
    assert total(after, "feedback_http_requests_total", **labels) == (
        total(before, "feedback_http_requests_total", **labels) + 1
    )
    assert total(after, "feedback_http_requests_total", outcome="invalid") == total(
        before, "feedback_http_requests_total", outcome="invalid"
    )


def error_records(log: str, log_format: str) -> list[str]:
    """The ERROR records of a service log, each with its traceback if it has one."""
    if log_format == "json":
        records = [json.loads(line) for line in log.splitlines()]
        return [
            f"{r['message']}\n{r.get('exc_info', '')}" for r in records if r["level"] == "ERROR"
        ]
    texts: list[str] = []
    for line in log.splitlines():
        if line[:4].isdigit():  # a record starts with its timestamp
            texts.append(line)
        elif texts:  # a continuation line: the traceback
            texts[-1] += "\n" + line
    return [text for text in texts if text.split()[2] == "ERROR"]


def test_store_raising_on_commit_gives_500_and_the_writer_lives_on(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalStore(data_dir)
    settings = Settings.model_validate({"data_dir": data_dir})
    with (
        InProcessServer(create_app(settings, store=store), lifespan="on") as server,
        httpx.Client(base_url=server.url, timeout=10.0) as client,
    ):
        assert client.post("/feedback", json={"prediction": 1, "actual": 0}).status_code == 200
        before = scrape(client)
        store.failing_commit.set()
        response = client.post("/feedback", json={"prediction": 1, "actual": 1})
        assert_server_error(response, before, scrape(client))
        store.failing_commit.clear()
        assert client.post("/feedback", json={"prediction": 0, "actual": 1}).status_code == 200
        assert cell_counts(scrape(client)) == {"tp": 0, "tn": 0, "fp": 1, "fn": 1}
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].exc_info is not None
    text = "".join(traceback.format_exception(*errors[0].exc_info))
    assert "Traceback (most recent call last)" in text
    assert "the store is on fire" in text


@contextlib.contextmanager
def logged_service(data_dir: Path) -> Iterator[tuple[PipeLog, ServiceProcess, httpx.Client]]:
    """A service whose log the test reads, and a client of it."""
    with (
        PipeLog() as log,
        running(ServiceProcess(data_dir, log=log.writer)) as service,
        httpx.Client(base_url=service.url, timeout=10.0) as client,
    ):
        log.close_writer()
        yield log, service, client


def test_disk_refusing_writes_is_a_server_error_never_a_400(data_dir: Path) -> None:
    with logged_service(data_dir) as (_, service, client):
        assert client.post("/feedback", json={"prediction": 1, "actual": 1}).status_code == 200
        before = scrape(client)
        refuse_writes(service)
        response = client.post("/feedback", json={"prediction": 0, "actual": 0})
        assert_server_error(response, before, scrape(client), status=503)
        assert response.json()["error"].startswith("Store unavailable")


@pytest.fixture
def failed_commit(data_dir: Path) -> tuple[str, Samples]:
    """The log and the metrics of a service whose one commit failed on a disk refusing writes."""
    with logged_service(data_dir) as (log, service, client):
        refuse_writes(service)
        response = client.post("/feedback", json={"prediction": 0, "actual": 0})
        assert response.status_code >= 500
        samples = scrape(client)
        service.terminate()  # once it has exited, its log is complete
    return log.text, samples


def test_store_failure_is_logged_at_error(failed_commit: tuple[str, Samples]) -> None:
    log, _ = failed_commit
    errors = error_records(log, "text")
    assert len(errors) == 1
    assert "disk I/O error" in errors[0]


def test_store_failure_is_no_validation_error(failed_commit: tuple[str, Samples]) -> None:
    _, samples = failed_commit
    assert total(samples, "feedback_validation_errors_total") == 0


def test_an_outage_is_logged_at_its_first_failure_then_summarised_and_each_counted(
    data_dir: Path,
) -> None:
    """A full disk fails every write: the log gets the first failure's line and then at most
    one a reason every ``UNAVAILABLE_LOG_EVERY`` seconds (the fast route and Starlette's
    routes alike), while the request metrics count every failure."""
    failures = 150  # of each route
    routes = {
        "/feedback": {"prediction": 0, "actual": 0},
        "/feedback/batch": {"items": [{"prediction": 1, "actual": 1}]},
    }
    with logged_service(data_dir) as (log, service, client):
        assert client.post("/feedback", json={"prediction": 1, "actual": 1}).status_code == 200
        before = scrape(client)
        refuse_writes(service)
        started = time.monotonic()
        for _ in range(failures):
            for route, body in routes.items():
                assert client.post(route, json=body).status_code == 503
        elapsed = time.monotonic() - started
        after = scrape(client)
        service.terminate()  # once it has exited, its log is complete
    for route in routes:
        labels = {"route": route, "status": "503"}
        failed = total(after, "feedback_http_requests_total", **labels)
        assert failed - total(before, "feedback_http_requests_total", **labels) == failures
    lines = [r for r in error_records(log.text, "text") if "unavailable POST /feedback" in r]
    assert "disk I/O error" in lines[0]
    # Lines of one reason are UNAVAILABLE_LOG_EVERY s apart at least, all within ``elapsed``.
    assert len(lines) <= 1 + elapsed / UNAVAILABLE_LOG_EVERY, lines
    assert all("more store_unavailable" in line for line in lines[1:]), lines
