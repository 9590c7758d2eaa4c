"""Requests answered whole by the service's protocol, on a real uvicorn server: a body that came
with its headers goes to the app's ``answer_whole`` (no ASGI task); one still coming goes through
ASGI; pipelined requests keep their order; a reply to a client that left writes nothing."""

import asyncio
import contextlib
import json
import logging
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from feedback_monitor.protocol import AnswersWhole, Reply, with_header_timeout
from tests.integration.helpers import InProcessServer, wait_until

HOLD = b"hold"  # a body whose reply the test sends later
LARGE = b"large"  # a body answered with 64 KiB
T = TypeVar("T")


class App:
    """Answers ``POST /whole`` whole (or holds the reply of a body ``hold``), the rest via ASGI;
    each answer names the path that made it."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.whole: list[bytes] = []
        self.streamed: list[bytes] = []
        self.held: list[Reply] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        self.streamed.append(body)
        answer = json.dumps({"via": "asgi", "path": scope["path"]}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

    def answers_whole(self, scope: Scope) -> bool:
        return bool(scope["method"] == "POST" and scope["path"] == "/whole")

    def answer_whole(self, scope: Scope, body: bytes, reply: Reply) -> None:
        self.loop = asyncio.get_running_loop()
        self.whole.append(body)
        if body == HOLD:
            self.held.append(reply)
        elif body == LARGE:
            reply(200, json.dumps({"via": "whole", "body": "x" * 2**16}).encode(), ())
        else:
            reply(200, json.dumps({"via": "whole", "body": body.decode()}).encode(), ())

    def release(self, status: int = 200) -> None:
        """Send the first held reply, from the server's loop."""
        assert self.loop is not None
        reply = self.held.pop(0)
        self.loop.call_soon_threadsafe(reply, status, b'{"via": "whole", "body": "hold"}', ())


@pytest.fixture
def served() -> Iterator[tuple[App, int, uvicorn.Server]]:
    app = App()
    assert isinstance(app, AnswersWhole)
    with InProcessServer(app, lifespan="off") as server:
        yield app, server.port, server.server


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n%s" % (
        path.encode(),
        extra,
        len(body),
        body,
    )


def responses(sock: socket.socket, count: int) -> list[tuple[bytes, dict[str, Any]]]:
    """The next ``count`` responses: each one's head and JSON body (by its Content-Length)."""
    received, answers = b"", list[tuple[bytes, dict[str, Any]]]()
    while len(answers) < count:
        head, found, rest = received.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), -1)  # fmt: skip
        if found and 0 <= length <= len(rest):
            answers.append((head, json.loads(rest[:length])))
            received = rest[length:]
            continue
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(answers)} responses and {received!r}"
        received += chunk
    return answers


def connections(server: uvicorn.Server) -> list[HttpToolsProtocol]:
    return [cast(HttpToolsProtocol, p) for p in server.server_state.connections]


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def test_a_body_that_comes_with_its_headers_is_answered_whole(
    served: tuple[App, int, uvicorn.Server],
) -> None:
    app, port, _ = served
    with connect(port) as sock:
        sock.sendall(post("/whole", b"one"))
        [(head, answer)] = responses(sock, 1)
        sock.sendall(post("/whole", b"two"))  # the same connection, kept alive
        [(_, again)] = responses(sock, 1)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\ncontent-type: application/json" in head
    assert b"\r\ndate: " in head  # uvicorn's default headers, as on every response
    assert (answer, again) == ({"via": "whole", "body": "one"}, {"via": "whole", "body": "two"})
    assert app.streamed == []


def test_a_body_still_coming_after_the_headers_goes_through_asgi(
    served: tuple[App, int, uvicorn.Server],
) -> None:
    """The client waits for 100 Continue, so the server has read the headers alone."""
    app, port, _ = served
    with connect(port) as sock:
        sock.sendall(post("/whole", b"", b"Expect: 100-continue\r\n").replace(
            b"Content-Length: 0", b"Content-Length: 5"))  # fmt: skip
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += sock.recv(1)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"later")
        [(_, answer)] = responses(sock, 1)
    assert answer == {"via": "asgi", "path": "/whole"}
    assert (app.whole, app.streamed) == ([], [b"later"])


def test_pipelined_requests_are_answered_in_order(served: tuple[App, int, uvicorn.Server]) -> None:
    """The first reply is held: the requests behind it, whole or not, wait for it."""
    app, port, _ = served
    with connect(port) as sock:
        sock.sendall(post("/whole", HOLD) + post("/whole", b"second") + post("/other", b"third"))
        wait_until(lambda: len(app.held) == 1, what="the first request handed in")
        assert (app.whole, app.streamed) == ([HOLD], [])  # the others wait in uvicorn's pipeline
        app.release()
        answers = [answer for _, answer in responses(sock, 3)]
    assert answers == [
        {"via": "whole", "body": "hold"},
        {"via": "whole", "body": "second"},
        {"via": "asgi", "path": "/other"},
    ]


def test_connection_close_is_honoured(served: tuple[App, int, uvicorn.Server]) -> None:
    _, port, _ = served
    for request in (post("/whole", b"x", b"Connection: close\r\n"),
                    post("/whole", b"x").replace(b"HTTP/1.1", b"HTTP/1.0")):  # fmt: skip
        with connect(port) as sock:
            sock.sendall(request)
            [(head, _)] = responses(sock, 1)
            assert b"\r\nconnection: close" in head.lower()
            assert sock.recv(65536) == b""  # and the server closed it


def test_a_reply_header_connection_close_closes(served: tuple[App, int, uvicorn.Server]) -> None:
    app, port, _ = served
    with connect(port) as sock:
        sock.sendall(post("/whole", HOLD))
        wait_until(lambda: len(app.held) == 1, what="the request handed in")
        assert app.loop is not None
        reply = app.held.pop()
        app.loop.call_soon_threadsafe(reply, 408, b"{}", [(b"connection", b"close")])
        [(head, _)] = responses(sock, 1)
        assert head.startswith(b"HTTP/1.1 408 ")
        assert head.lower().count(b"\r\nconnection: close") == 1
        assert sock.recv(65536) == b""


def test_many_pipelined_requests_answered_at_once_each_get_their_answer(
    served: tuple[App, int, uvicorn.Server],
) -> None:
    """Behind a held request, hundreds that are answered as soon as they start: the queue is
    worked through, not recursed into (each answer would start the next)."""
    app, port, _ = served
    count = 400
    with connect(port) as sock:
        sock.sendall(
            post("/whole", HOLD) + b"".join(post("/whole", b"%d" % n) for n in range(count))
        )
        wait_until(lambda: len(app.held) == 1, what="the first request handed in")
        app.release()
        answers = [answer["body"] for _, answer in responses(sock, count + 1)]
    assert answers == ["hold", *(str(n) for n in range(count))]


def test_a_request_read_after_an_answer_that_closed_is_dropped(
    served: tuple[App, int, uvicorn.Server],
) -> None:
    """uvicorn closes an HTTP/1.0 connection after each answer, even one the client asks to keep
    alive, but the parser reads on in the same bytes."""
    app, port, _ = served
    first = post("/whole", b"first", b"Connection: keep-alive\r\n").replace(
        b"HTTP/1.1", b"HTTP/1.0"
    )
    with connect(port) as sock:
        sock.sendall(first + post("/whole", b"second"))
        [(_, answer)] = responses(sock, 1)
        assert sock.recv(65536) == b""
    assert answer == {"via": "whole", "body": "first"}
    assert (app.whole, app.streamed) == ([b"first"], [])


def test_a_connection_busy_with_a_request_is_not_closed_as_idle() -> None:
    """An answer given while the bytes of the next request are still being read must not leave
    the connection marked idle: its body may take longer than the keep-alive timeout."""
    app = App()
    with (
        InProcessServer(app, lifespan="off", timeout_keep_alive=1) as server,
        connect(server.port) as sock,
    ):
        sock.sendall(post("/whole", b"now") + post("/whole", b"later").removesuffix(b"later"))
        [(_, answer)] = responses(sock, 1)
        time.sleep(1.5)  # the client's pause before the body, past the keep-alive timeout
        sock.sendall(b"later")
        [(_, later)] = responses(sock, 1)
    assert (answer, later) == ({"via": "whole", "body": "now"}, {"via": "asgi", "path": "/whole"})


def test_a_request_begun_before_the_last_answer_is_not_closed_as_idle() -> None:
    """The next request's first bytes came before the answer to the one before: the connection
    is busy with it, however long the rest of it takes."""
    app = App()
    with (
        InProcessServer(app, lifespan="off", timeout_keep_alive=1) as server,
        connect(server.port) as sock,
    ):
        second = post("/whole", b"second")
        sock.sendall(post("/whole", HOLD) + second[:20])
        wait_until(lambda: len(app.held) == 1, what="the first request handed in")
        app.release()
        [(_, first)] = responses(sock, 1)
        time.sleep(1.5)  # the client's pause within the request, past the keep-alive timeout
        sock.sendall(second[20:])
        [(_, answer)] = responses(sock, 1)
    assert (first["body"], answer["body"]) == ("hold", "second")


def test_a_reply_after_the_client_left_with_requests_queued_writes_nothing(
    served: tuple[App, int, uvicorn.Server], caplog: pytest.LogCaptureFixture
) -> None:
    """No write and no error: uvicorn marks only the last request read as disconnected, not
    the one being answered, which here is the second."""
    app, port, server = served
    caplog.set_level(logging.WARNING)
    with connect(port) as sock:
        sock.sendall(post("/whole", HOLD) * 2 + post("/whole", b"last"))
        wait_until(lambda: len(app.held) == 1, what="the first request handed in")
        app.release()
        responses(sock, 1)
        wait_until(lambda: len(app.held) == 1, what="the second request handed in")
    # Its end may be a half-close (nc -N), so what it sent whole is answered, into the void.
    app.release()
    wait_until(lambda: not server.server_state.connections, what="the server to see the close")
    with connect(port) as sock:
        sock.sendall(post("/whole", b"after"))
        [(_, answer)] = responses(sock, 1)
    assert answer == {"via": "whole", "body": "after"}
    assert app.whole[:2] == [HOLD, HOLD]
    assert app.whole[-1] == b"after"
    assert set(app.whole[2:-1]) <= {b"last"}  # unless the client's reset came first
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_client_that_does_not_read_its_answers_is_not_read_from(
    served: tuple[App, int, uvicorn.Server],
) -> None:
    """Answers that pile up unread stop the reading of requests, as on the ASGI path, instead of
    growing the server's buffers without end."""
    _, port, server = served
    request, pending = post("/whole", LARGE), b""
    with connect(port) as sock:
        sock.setblocking(False)
        while True:
            pending = pending or request * 16
            try:
                pending = pending[sock.send(pending) :]
            except BlockingIOError:  # the client's buffers are full: is the server reading?
                if all(protocol.flow.read_paused for protocol in connections(server)):
                    break
                select.select([], [sock], [], 0.1)
            buffered = sum(
                p.transport.get_write_buffer_size() for p in server.server_state.connections
            )
            assert buffered < 16 * 2**20, "the server read on and buffered its answers"


def in_headers(server: uvicorn.Server) -> bool:
    """Whether the one connection has read part of a request's head, and waits for the rest."""
    return any(getattr(protocol, "_in_headers", False) for protocol in connections(server))


def test_pipelined_requests_in_long_reads_are_no_long_head(
    served: tuple[App, int, uvicorn.Server],
) -> None:
    """A read that starts in one request's head and ends in another's is not all head."""
    _, port, server = served
    requests = b"".join(post("/whole", b"%d" % n) for n in range(2000))  # about 100 KB
    with connect(port) as sock:
        sock.sendall(requests[:20])
        wait_until(lambda: in_headers(server), what="the first head half read")
        sock.sendall(requests[20:-10])  # ends in the last request's head
        wait_until(lambda: in_headers(server), what="the long read")
        sock.sendall(requests[-10:])
        answers = responses(sock, 2000)
    assert [body for _, body in answers] == [{"via": "whole", "body": str(n)} for n in range(2000)]


OFFER = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n"


@pytest.mark.parametrize(
    "cut",
    [0, 1, 2, 4, 9, 10],  # into "\r\nUpgrade: h2c"
)
def test_an_upgrade_offer_split_between_reads_is_ignored_too(
    served: tuple[App, int, uvicorn.Server], cut: int
) -> None:
    _, port, server = served
    request = post("/whole", b'{"prediction": 1, "actual": 1}', OFFER)
    split = request.index(b"\r\nUpgrade:") + cut
    with connect(port) as sock:
        sock.sendall(request[:split])
        wait_until(lambda: in_headers(server), what="the first part read")
        sock.sendall(request[split:])
        [(head, answer)] = responses(sock, 1)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert answer == {"via": "whole", "body": '{"prediction": 1, "actual": 1}'}


def test_a_client_that_pipelines_without_end_is_read_no_faster_than_answered(
    served: tuple[App, int, uvicorn.Server],
) -> None:
    """Requests read ahead wait in the pipeline; an answer lets the next one go, not another
    read's worth in: the queue shrinks as its requests are answered."""
    app, port, server = served
    with connect(port) as sock:
        sock.setblocking(False)
        flood = post("/whole", HOLD) * 20_000  # more than the socket buffers take at once
        sent = 0
        with contextlib.suppress(BlockingIOError):
            while sent < len(flood):
                sent += sock.send(flood[sent:])
        wait_until(lambda: len(app.held) == 1, what="the first request handed in")
        [protocol] = connections(server)
        assert app.loop is not None
        queued = on_loop(app.loop, lambda: len(protocol.pipeline))  # once its read is parsed
        assert queued > 0
        for answered in range(1, 6):
            app.release()
            wait_until(lambda: len(app.held) == 1, what="the next request handed in")
            assert on_loop(app.loop, lambda: len(protocol.pipeline)) == queued - answered
        on_loop(app.loop, protocol.transport.close)  # paused, it would not see the client go


def on_loop(loop: asyncio.AbstractEventLoop, read: Callable[[], T]) -> T:
    """``read()`` on the server's loop, between its callbacks (never in the middle of a read)."""

    async def call() -> T:
        return read()

    return asyncio.run_coroutine_threadsafe(call(), loop).result(timeout=10)


def test_a_head_whose_rest_the_server_holds_back_is_given_time() -> None:
    """A request's head cut by the read behind requests still queued, then behind the last of
    them still answered: the server, not the client, keeps the rest unread until they are
    answered, so the header deadline waits too (it closed the connection, and with it the
    answers of the requests read before)."""
    app = App()
    with (
        InProcessServer(app, lifespan="off", http=with_header_timeout(0.2)) as server,
        connect(server.port) as sock,
    ):
        rest = b"Content-Length: 1\r\n\r\n2"
        cut = post("/whole", b"2").removesuffix(rest)
        sock.sendall(post("/whole", HOLD) * 2 + cut)
        for _ in range(2):  # the first held with the second queued, then the second held
            wait_until(lambda: len(app.held) == 1, what="a request handed in")
            [protocol] = connections(server.server)
            deadline = protocol._deadline  # type: ignore[attr-defined]
            assert deadline is not None
            wait_until(
                lambda p=protocol, d=deadline: p._deadline is not d,  # type: ignore[misc]
                what="the header deadline to pass",
            )
            app.release()
        sock.sendall(rest)
        answers = [answer["body"] for _, answer in responses(sock, 3)]
    assert answers == ["hold", "hold", "2"]
