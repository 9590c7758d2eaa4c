"""Responses on the wire, byte by byte, from a real server: whatever path writes them, every
response arrives whole, and a client waiting for 100 Continue gets it before it sends a body."""

import json
import socket

import pytest

from feedback_monitor.testing import ServiceProcess

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
        b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["two Content-Lengths", "Content-Length and chunked", "a 70 kB URL"],
)
def test_requests_smuggling_or_too_long_get_a_json_400(
    service: ServiceProcess, request_bytes: bytes
) -> None:
    received = exchange(service, request_bytes, b"never in a response")
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert "error" in json.loads(body)


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
