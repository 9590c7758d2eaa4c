"""SIGTERM: stop accepting, commit and answer what is in flight, exit 0."""

import contextlib
import json
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from feedback_monitor.testing import ServiceProcess
from tests.integration.helpers import (
    CELLS,
    Load,
    cell_counts,
    port_refuses,
    process_tree,
    scrape,
    serving,
    wait_until,
)

pytestmark = pytest.mark.integration

# uvicorn re-raises a captured SIGTERM once it has shut down gracefully; the tests below check the
# graceful part whatever the status, and test_sigterm_exits_zero checks the status itself.
TERMINATED = (0, -signal.SIGTERM)
JSON = {"content-type": "application/json"}


def stored(url: str) -> dict[str, int]:
    with httpx.Client(base_url=url, timeout=10.0) as client:
        return cell_counts(scrape(client))


def test_sigterm_under_load(data_dir: Path, log_path: Path) -> None:
    with serving(data_dir, log_path=log_path) as service:
        with Load(service.url, threads=8) as load:
            load.wait_for_acks(300)
            status = service.terminate()
        assert status in TERMINATED
    assert "stopped" in log_path.read_text()
    assert load.unexpected == []  # every request answered got a 200
    assert load.errors, "the clients never saw the server go"
    assert not [error for error in load.errors if isinstance(error, httpx.TimeoutException)]
    with serving(data_dir, log_path=log_path) as service:
        counts = stored(service.url)
    for cell in CELLS:
        assert load.acknowledged[cell] <= counts[cell] <= load.attempted[cell], cell


def wait_for_refusal(service: ServiceProcess) -> None:
    wait_until(lambda: port_refuses(service.port), what="the listener closed")


class SlowBody:
    """A request body whose second half waits for ``release``: a request held in flight."""

    def __init__(self) -> None:
        self.first_half_sent = threading.Event()
        self.release = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        yield b'{"prediction": 1, '
        self.first_half_sent.set()  # httpx asks for the next chunk once this one is written
        self.release.wait(timeout=30.0)
        yield b'"actual": 0}'


def test_sigterm_answers_the_request_in_flight(data_dir: Path, log_path: Path) -> None:
    body = SlowBody()
    answers: list[httpx.Response] = []

    def post(url: str) -> None:
        with httpx.Client(timeout=30.0) as client:
            answers.append(client.post(url + "/feedback", content=body, headers=JSON))

    with serving(data_dir, log_path=log_path) as service, httpx.Client() as other:
        client_thread = threading.Thread(target=post, args=(service.url,))
        client_thread.start()
        try:
            assert body.first_half_sent.wait(timeout=30.0)
            # One round trip on another connection: the server has read what came before it.
            assert other.get(service.url + "/health").status_code == 200
            assert service.process is not None
            service.process.send_signal(signal.SIGTERM)
            wait_for_refusal(service)  # it stopped accepting, with our request still open
        finally:
            body.release.set()
            client_thread.join(timeout=30.0)
        assert service.process.wait(timeout=30.0) in TERMINATED
    assert "stopped" in log_path.read_text()
    assert [(r.status_code, r.json()["success"]) for r in answers] == [(200, True)]
    with serving(data_dir, log_path=log_path) as service:
        assert stored(service.url) == {"tp": 0, "tn": 0, "fp": 1, "fn": 0}


def test_sigterm_exits_zero(service: ServiceProcess) -> None:
    assert service.terminate() == 0


def test_sigterm_waits_for_a_request_that_never_ends_only_so_long(
    data_dir: Path, log_path: Path
) -> None:
    """A body that stops halfway holds its connection until the body timeout (here 300 s); the
    shutdown gives up on it after ``--shutdown-timeout``, answers it 503 and exits cleanly."""
    args = ("--shutdown-timeout", "1", "--body-timeout", "300")
    head = (b"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 30\r\n\r\n")  # fmt: skip
    with (
        serving(data_dir, *args, log_path=log_path) as service,
        socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock,
        httpx.Client() as other,
    ):
        sock.sendall(head + b'{"prediction": 1, ')
        # One round trip on another connection: the server has read what came before it.
        assert other.get(service.url + "/health").status_code == 200
        assert service.terminate(timeout=30) in TERMINATED
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert json.loads(body) == {"error": "Service is shutting down"}
    assert "stopped" in log_path.read_text()


def test_sigterm_cutting_off_a_write_in_its_commit_says_it_may_be_stored(
    data_dir: Path, log_path: Path
) -> None:
    """The store is stopped with the request's feedback handed in: the shutdown stops waiting,
    answers 503 saying the write may be stored, and once the store goes on it is."""
    head = (b"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 30\r\n\r\n")  # fmt: skip
    with (
        serving(data_dir, "--shutdown-timeout", "1", log_path=log_path) as service,
        socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock,
        httpx.Client() as other,
    ):
        assert service.process is not None
        [store] = [pid for pid in process_tree(service.pid) if pid != service.pid]
        sock.sendall(head)  # the body in a later read: the request goes through ASGI
        assert other.get(service.url + "/health").status_code == 200
        os.kill(store, signal.SIGSTOP)
        try:
            sock.sendall(b'{"prediction": 1, "actual": 1}')
            assert other.get(service.url + "/health").status_code == 200  # the body is read
            service.process.send_signal(signal.SIGTERM)
            answer = sock.recv(65536)
        finally:
            os.kill(store, signal.SIGCONT)
        assert service.process.wait(timeout=30) in TERMINATED
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert "may be stored" in json.loads(body)["error"]
    with serving(data_dir, log_path=log_path) as service:
        assert stored(service.url) == {"tp": 1, "tn": 0, "fp": 0, "fn": 0}


def test_sigterm_with_a_hung_store_exits_in_time(data_dir: Path, log_path: Path) -> None:
    """The store stopped (a disk that hangs) with a write in hand: a graceful shutdown gives up
    on it after --write-timeout, kills the store process once it has waited for it, and exits,
    within Kubernetes' grace period; it used to wait until the store went on."""
    with (
        serving(
            data_dir, "--write-timeout", "1", "--shutdown-timeout", "2", log_path=log_path
        ) as service,
        httpx.Client(base_url=service.url, timeout=30.0) as client,
    ):
        assert service.process is not None
        assert client.post("/feedback", json={"prediction": 1, "actual": 1}).status_code == 200
        [store] = [pid for pid in process_tree(service.pid) if pid != service.pid]
        os.kill(store, signal.SIGSTOP)
        try:
            answer = client.post("/feedback", json={"prediction": 0, "actual": 1})
            assert answer.status_code == 503
            assert "may still be stored" in answer.json()["error"]
            service.process.send_signal(signal.SIGTERM)
            assert service.process.wait(timeout=25) in TERMINATED
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(store, signal.SIGCONT)
    log = log_path.read_text()
    assert "did not exit within 1 s" in log  # it owed an answer: no 10 s more for it
    assert "stopped: the store left a write unanswered" in log
    assert "every queued feedback committed" not in log
    with serving(data_dir, log_path=log_path) as service:
        assert stored(service.url)["tp"] == 1
