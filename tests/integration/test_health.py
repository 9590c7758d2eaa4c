"""/health answers while the process runs; /ready only while the store answers."""

import os
import signal
from pathlib import Path

import httpx
import pytest

from feedback_monitor.app import create_app
from feedback_monitor.settings import Settings
from feedback_monitor.testing import ServiceProcess
from tests.integration.helpers import InProcessServer, LocalStore, process_tree

pytestmark = pytest.mark.integration


def assert_json(response: httpx.Response, status: int, body: dict[str, str]) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == body


def test_health_and_ready_on_the_real_service(client: httpx.Client) -> None:
    assert_json(client.get("/health"), 200, {"status": "ok"})
    assert_json(client.get("/ready"), 200, {"status": "ready"})


def test_ready_is_503_while_the_store_does_not_answer(data_dir: Path) -> None:
    store = LocalStore(data_dir)
    settings = Settings.model_validate({"data_dir": data_dir})
    with (
        InProcessServer(create_app(settings, store=store), lifespan="on") as server,
        httpx.Client(base_url=server.url, timeout=10.0) as client,
    ):
        assert_json(client.get("/ready"), 200, {"status": "ready"})
        store.sqlite.close()  # the database connection is gone: every query raises from now on
        ready = client.get("/ready")
        assert ready.status_code == 503, ready.text
        assert ready.headers["content-type"].startswith("application/json")
        assert isinstance(ready.json()["error"], str)
        assert_json(client.get("/health"), 200, {"status": "ok"})


def test_a_hung_store_answers_reads_and_writes_503_in_time(data_dir: Path) -> None:
    """The store process stopped (a disk or database that hangs): writes, windows, series and
    drift each get a 503 after ``--write-timeout`` instead of waiting for it; once it goes on,
    they answer again."""
    with (
        ServiceProcess(data_dir, "--write-timeout", "0.5") as service,
        httpx.Client(base_url=service.url, timeout=30.0) as client,
    ):
        assert client.post("/feedback", json={"prediction": 1, "actual": 1}).status_code == 200
        [store] = [pid for pid in process_tree(service.pid) if pid != service.pid]
        reads = ["/metrics", "/series?step=60", "/drift"]
        os.kill(store, signal.SIGSTOP)
        try:
            for path in reads:
                answer = client.get("/api/v1/models/default" + path)
                assert answer.status_code == 503, (path, answer.text)
                assert answer.json() == {"error": "Store unavailable"}
            written = client.post("/feedback", json={"prediction": 1, "actual": 0})
            assert written.status_code == 503, written.text
        finally:
            os.kill(store, signal.SIGCONT)
        for path in reads:
            assert client.get("/api/v1/models/default" + path).status_code == 200, path
