"""/health answers while the process runs; /ready only while the store answers."""

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from feedback_monitor.app import create_app
from feedback_monitor.settings import Settings
from feedback_monitor.testing import ServiceProcess
from tests.integration.helpers import (
    InProcessServer,
    LocalStore,
    process_tree,
    refuse_writes,
    wait_until,
)

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


def store_of(service: ServiceProcess) -> int:
    """The pid of the service's store process."""
    [store] = [pid for pid in process_tree(service.pid) if pid != service.pid]
    return store


def ready(client: httpx.Client) -> int:
    return client.get("/ready").status_code


def test_a_store_that_committed_lately_is_ready_without_a_probe_behind_its_writes(
    data_dir: Path,
) -> None:
    """A busy store whose commits are slow (a backfill) is ready while it commits within
    ``--write-timeout``: no probe is queued behind its writes to time out. Here a write is held
    in flight by a stopped store, which no probe could get past."""
    with (
        ServiceProcess(data_dir, "--write-timeout", "60") as service,
        httpx.Client(base_url=service.url, timeout=30.0) as client,
        ThreadPoolExecutor(1) as writer,
    ):
        assert client.post("/feedback", json={"prediction": 1, "actual": 1}).status_code == 200
        store = store_of(service)
        os.kill(store, signal.SIGSTOP)
        try:
            slow = writer.submit(client.post, "/feedback", json={"prediction": 0, "actual": 0})
            assert_json(client.get("/ready"), 200, {"status": "ready"})
        finally:
            os.kill(store, signal.SIGCONT)
        assert slow.result().status_code == 200


def test_a_hung_store_is_not_ready_once_it_has_not_committed_for_the_write_timeout(
    data_dir: Path,
) -> None:
    with (
        ServiceProcess(data_dir, "--write-timeout", "0.5") as service,
        httpx.Client(base_url=service.url, timeout=30.0) as client,
    ):
        assert client.post("/feedback", json={"prediction": 1, "actual": 1}).status_code == 200
        store = store_of(service)
        os.kill(store, signal.SIGSTOP)
        try:
            wait_until(lambda: ready(client) == 503, what="/ready 503 on a hung store")
            assert_json(client.get("/health"), 200, {"status": "ok"})
        finally:
            os.kill(store, signal.SIGCONT)
        wait_until(lambda: ready(client) == 200, what="/ready 200 once the store goes on")


def test_a_full_disk_is_not_ready_from_its_first_failed_write(data_dir: Path) -> None:
    """However recent the commit before it: a failed write sends /ready to its probe."""
    with (
        ServiceProcess(data_dir, "--write-timeout", "60") as service,
        httpx.Client(base_url=service.url, timeout=30.0) as client,
    ):
        assert client.post("/feedback", json={"prediction": 1, "actual": 1}).status_code == 200
        refuse_writes(service)
        assert client.post("/feedback", json={"prediction": 1, "actual": 1}).status_code == 503
        assert client.get("/ready").status_code == 503
        assert client.get("/ready").status_code == 503  # its probe failed too
