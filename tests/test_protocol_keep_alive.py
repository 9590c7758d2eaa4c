"""The keep-alive timeout of the service's protocol, on a real uvicorn server: one timer per
connection instead of one per response, closing the same connections at the same time."""

import socket
import time
from collections.abc import Iterator

import pytest
from bench.bare import app

from tests.integration.helpers import InProcessServer

KEEP_ALIVE = 1  # second (uvicorn takes whole seconds)
REQUEST = b"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"


@pytest.fixture
def port() -> Iterator[int]:
    with InProcessServer(app, timeout_keep_alive=KEEP_ALIVE) as server:
        yield server.port


def answered(sock: socket.socket) -> bytes:
    """Send a request, read its whole response (the bare app's, chunked: it ends with the
    empty chunk)."""
    sock.sendall(REQUEST)
    received = b""
    while not received.endswith(b"\r\n0\r\n\r\n"):
        chunk = sock.recv(65536)
        assert chunk, f"closed after {received!r}"
        received += chunk
    return received


def closed_after(sock: socket.socket) -> float:
    """Seconds until the server closes the connection."""
    start = time.monotonic()
    assert sock.recv(65536) == b""
    return time.monotonic() - start


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10 * KEEP_ALIVE) as sock:
        assert answered(sock).startswith(b"HTTP/1.1 200 ")
        assert KEEP_ALIVE * 0.9 <= closed_after(sock) < KEEP_ALIVE * 3


def test_a_connection_in_use_is_kept_past_the_timeout_and_closed_once_idle(port: int) -> None:
    """Requests keep coming for three timeouts, each less than a timeout after the last answer:
    the timer fires while the connection is busy or freshly idle, and must wait again."""
    with socket.create_connection(("127.0.0.1", port), timeout=10 * KEEP_ALIVE) as sock:
        start = time.monotonic()
        while time.monotonic() - start < 3 * KEEP_ALIVE:
            assert answered(sock).startswith(b"HTTP/1.1 200 ")
            time.sleep(KEEP_ALIVE / 3)  # a client's pause between requests, not a wait
        assert KEEP_ALIVE * 0.9 <= closed_after(sock) + KEEP_ALIVE / 3 < KEEP_ALIVE * 3
