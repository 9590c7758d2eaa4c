"""/health answers while the process runs; /ready only while the store answers."""

from pathlib import Path

import httpx
import pytest

from feedback_monitor.app import create_app
from feedback_monitor.settings import Settings
from tests.integration.helpers import InProcessServer, LocalStore

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
