"""Responses on the wire, byte by byte, from a real server: whatever path writes them, every
response arrives whole, and a client waiting for 100 Continue gets it before it sends a body."""

import contextlib
import json
import socket

import httpx
import pytest

from feedback_monitor.testing import ServiceProcess
from tests.integration.views import models

pytestmark = pytest.mark.integration


def exchange(service: ServiceProcess, request: bytes, until: bytes) -> bytes:
    """What the server sends back, read until ``until`` is in it or the connection closes."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while until not in received and (chunk := sock.recv(65536)):
            received += chunk
    return received


def test_a_feedback_response_is_whole(service: ServiceProcess) -> None:
    body = b'{"prediction": 1, "actual": 1}'
    request = (b"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
    received = exchange(service, request, b"}}")
    head, _, answer = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.startswith(b'{"success":true,"metrics":')


def test_a_head_request_gets_its_headers(service: ServiceProcess) -> None:
    received = exchange(service, b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n", b"\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 ")
    assert received.endswith(b"\r\n\r\n")


def test_a_request_the_parser_refuses_is_answered_before_the_close(
    service: ServiceProcess,
) -> None:
    received = exchange(service, b"NOT HTTP AT ALL\r\n\r\n", b"never in a response")
    assert received.startswith(b"HTTP/1.1 400 ")
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"\r\ncontent-type: application/json\r\n" in head
    assert b"\r\ncontent-length: %d\r\n" % len(body) in head
    assert json.loads(body) == {"error": "Invalid HTTP request received."}


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        b"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ],
    ids=["two Content-Lengths", "Content-Length and chunked"],
)
def test_requests_smuggling_get_a_json_400(service: ServiceProcess, request_bytes: bytes) -> None:
    received = exchange(service, request_bytes, b"never in a response")
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert "error" in json.loads(body)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 20_000 + b"\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: " + b"b" * 10_000_000 + b"\r\n\r\n",
    ],
    ids=["a 70 kB URL", "20,000 headers", "a 10 MB header"],
)
def test_a_request_head_past_64_kib_gets_a_json_431(
    service: ServiceProcess, request_bytes: bytes
) -> None:
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # closed before the end
            sock.sendall(request_bytes)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    assert json.loads(body) == {"error": "Request line and headers too large: at most 65536 bytes"}


def test_a_request_head_within_the_limit_is_served(service: ServiceProcess) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: " + b"b" * 60_000 + b"\r\n\r\n"
    assert exchange(service, request, b"}").startswith(b"HTTP/1.1 200 OK\r\n")


def feedback_request(id: str, extra: bytes = b"") -> bytes:
    body = b'{"prediction": 1, "actual": 0, "model": "wire", "id": "%s"}' % id.encode()
    return (b"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s"
            b"Content-Length: %d\r\n\r\n%s" % (extra, len(body), body))  # fmt: skip


def stored(service: ServiceProcess) -> int:
    """The feedback the ``wire`` model holds."""
    with httpx.Client(base_url=service.url, timeout=10) as client:
        return sum(models(client).get(("wire", ""), {"counts": {}})["counts"].values())


def answers_until_closed(service: ServiceProcess, request: bytes, half_close: bool) -> bytes:
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)  # as nc -N does: all is sent, the answer awaited
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_a_write_before_bytes_that_are_no_request_is_answered_first(
    service: ServiceProcess,
) -> None:
    before = stored(service)
    garbage = b"GET /\xc3\xa9 HTTP/1.1\r\n\r\n"
    received = answers_until_closed(service, feedback_request("wire-1") + garbage, False)
    first, _, rest = received.partition(b"HTTP/1.1 400 ")
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")  # it was committed: its answer says so
    assert b'"success":true' in first
    assert rest.endswith(b'{"error":"Invalid HTTP request received."}')
    assert stored(service) == before + 1


def test_a_client_that_closes_its_side_gets_its_answers(service: ServiceProcess) -> None:
    before = stored(service)
    requests = feedback_request("wire-2") + feedback_request("wire-3")
    received = answers_until_closed(service, requests, half_close=True)
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 2
    assert received.endswith(b"}}")
    assert stored(service) == before + 2


def test_an_offer_to_upgrade_is_ignored(service: ServiceProcess) -> None:
    """As curl --http2 offers h2c: the request is served on HTTP/1.1, body and all."""
    before = stored(service)
    offer = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n"
    received = exchange(service, feedback_request("wire-4", offer), b"}}")
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert stored(service) == before + 1


def test_100_continue_comes_before_the_body_is_sent(service: ServiceProcess) -> None:
    body = b'{"prediction": 0, "actual": 0}'
    head = (b"POST /feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))  # fmt: skip
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(head)
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            chunk = sock.recv(1)
            assert chunk, "closed without 100 Continue"
            interim += chunk
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        final = b""
        while b"}}" not in final:
            final += sock.recv(65536)
    assert final.startswith(b"HTTP/1.1 200 OK\r\n")
