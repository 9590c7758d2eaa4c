"""Fixtures of the integration tests: a real service on a fresh data directory."""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from feedback_monitor.testing import ServiceProcess
from tests.integration.helpers import serving


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "service.log"


@pytest.fixture
def service(data_dir: Path, log_path: Path) -> Iterator[ServiceProcess]:
    with serving(data_dir, log_path=log_path) as started:
        yield started


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=10.0) as http:
        yield http
