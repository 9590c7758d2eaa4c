"""Slow and greedy clients on a real server: half-sent headers and bodies, and the rate limit.

Whatever one client does, the others are served, and its connection is closed after the
timeout.
"""

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from feedback_monitor.testing import ServiceProcess
from tests.integration.helpers import serving

pytestmark = pytest.mark.integration

TIMEOUT = 1.0  # --header-timeout and --body-timeout
FEEDBACK = {"prediction": 1, "actual": 1}


@pytest.fixture
def service(tmp_path: Path, log_path: Path) -> Iterator[ServiceProcess]:
    args = ("--header-timeout", str(TIMEOUT), "--body-timeout", str(TIMEOUT))
    with serving(tmp_path / "data", *args, log_path=log_path) as started:
        yield started


def connect(service: ServiceProcess, first: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=10 * TIMEOUT)
    sock.sendall(first)
    return sock


def read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed it."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received, time.monotonic()


def others_are_served(service: ServiceProcess) -> None:
    with httpx.Client(base_url=service.url, timeout=TIMEOUT / 2) as client:
        for _ in range(3):
            assert client.post("/feedback", json=FEEDBACK).status_code == 200


@pytest.mark.parametrize(
    "first",
    [b"", b"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Ty"],
    ids=["nothing", "half the headers"],
)
def test_slow_headers_are_cut_off_and_others_served(service: ServiceProcess, first: bytes) -> None:
    start = time.monotonic()
    with connect(service, first) as sock:
        others_are_served(service)
        received, closed = read_until_closed(sock)
    assert received == b""
    assert TIMEOUT * 0.9 <= closed - start < TIMEOUT * 5


def test_a_body_that_stops_is_answered_408_and_closed(service: ServiceProcess) -> None:
    head = b"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    start = time.monotonic()
    with connect(service, head + b'Content-Length: 40\r\n\r\n{"prediction": 1,') as sock:
        others_are_served(service)
        received, closed = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in received.lower()
    assert received.endswith(b'{"error":"Body not received: no data for 1 s"}')
    assert TIMEOUT * 0.9 <= closed - start < TIMEOUT * 5


def test_a_batch_body_that_stops_is_answered_408_too(service: ServiceProcess) -> None:
    head = b"POST /predictions/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    with connect(service, head + b"Content-Length: 40\r\n\r\n[") as sock:
        received, _ = read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in received.lower()


def test_keep_alive_requests_are_not_cut_off(service: ServiceProcess) -> None:
    with httpx.Client(base_url=service.url, timeout=10.0) as client:
        for _ in range(3):
            assert client.post("/feedback", json=FEEDBACK).status_code == 200
            time.sleep(TIMEOUT * 0.6)  # idle, less than uvicorn's keep-alive of 5 s


def test_the_rate_limit_on_a_real_server(tmp_path: Path, log_path: Path) -> None:
    with (
        serving(tmp_path / "data", "--rate-limit", "5", log_path=log_path) as service,
        httpx.Client(base_url=service.url, timeout=10.0) as client,
    ):
        statuses = [client.post("/feedback", json=FEEDBACK).status_code for _ in range(20)]
        assert statuses.count(200) >= 5
        assert 429 in statuses
        limited = client.post("/feedback", json=FEEDBACK)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert client.get("/health").status_code == 200  # probes are never limited
        time.sleep(1.0)
        assert client.post("/feedback", json=FEEDBACK).status_code == 200
