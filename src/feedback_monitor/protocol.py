"""uvicorn's httptools protocol with a deadline on request headers, one send per response, and
requests answered whole.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but a client that
connects, or starts a request, and then sends its headers slowly (or never: slowloris) holds its
connection open forever. Here a timer closes it when the headers are not complete in time. The
timer is armed only while headers are incomplete after the bytes at hand, so a request whose
headers arrive in one read (nearly all of them) costs no timer at all.

uvicorn writes a response's status line and headers, then its body, in two system calls; on
loopback each costs about as much as the rest of a small request. Holding the first back until
the second makes one (``make bench``: about 25% more requests per second on ``POST /feedback``).

uvicorn also arms a keep-alive timer after every response, which the next request cancels. Here
a connection has one timer, which closes it if it has been idle since the last response for
``timeout_keep_alive`` seconds when it fires, and otherwise waits for the rest of that time: the
same closes, without a timer per request (about 2 µs a request on ``POST /feedback``).

Bytes that are no HTTP request get uvicorn's 400 and close, with the service's JSON error body
instead of uvicorn's plain text, as every other error has, and only after the answers to the
requests read before them (which may have written). A request line and headers longer than
``MAX_HEAD`` get a 431 the same way: llhttp sets no limit, and uvicorn keeps every header.

A client may close its side once it has sent its request (``nc -N``): its answer is still
written, then the connection closed. An ``Upgrade`` (``curl --http2`` offers h2c) is ignored, as
RFC 9110 lets a server do: httptools would take the request's body for the new protocol's.

An app that answers some requests whole (``AnswersWhole``: ``edge.Edge`` for ``POST /feedback``)
gets them here when their body came in the same read as their headers, as nearly every small
request's does: no ASGI task, no receive or send, and the answer written in one piece, which
on that path is about a quarter of a request's cost (``make bench``). A request whose body is
still coming after that read goes the usual way, an ASGI task reading it with its deadlines, and
so does one for a client whose earlier answers wait unread (ASGI's send waits for it, and the
requests behind it stop being read). uvicorn's request cycle is kept either way, so pipelined
requests, keep-alive, disconnects and graceful shutdown work as they do for the rest.

Pipelined requests are read one socket read at a time: uvicorn resumes reading after every
answer (and in every ASGI ``receive``) even while requests read earlier wait their turn, so a
client that sends on without end had each answer let in another read's worth of requests, a
couple of thousand small ones, and filled the server's memory. Here reading resumes once none
waits (``QueueFlow``).
"""

import asyncio
import functools
import re
from collections.abc import Callable, Sequence, Sized
from typing import Any, Protocol, cast, runtime_checkable

from starlette.types import Scope
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from feedback_monitor.schemas import Error, encode

MAX_HEAD = 64 * 1024  # bytes of request line and headers (nginx's default is 32 KiB)
_UPGRADE = b"\r\nupgrade:"  # a header line that offers another protocol, lowercased
_UPGRADE_AT = re.compile(re.escape(_UPGRADE))
_HEAD_END = b"\r\n\r\n"

Headers = Sequence[tuple[bytes, bytes]]
Reply = Callable[[int, bytes, Headers], None]
"""Sends a JSON answer: its status, body and headers beyond Content-Type and Content-Length."""


@runtime_checkable
class AnswersWhole(Protocol):
    """An ASGI app that can answer some requests from their whole body, without a task."""

    def answers_whole(self, scope: Scope) -> bool:
        """Whether the request (its headers read) is one ``answer_whole`` answers."""

    def answer_whole(self, scope: Scope, body: bytes, reply: Reply) -> None:
        """Call ``reply(status, json_body, headers)`` once, now or later; never raise."""


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """Closes a connection whose request headers take longer than ``header_timeout`` seconds;
    writes each response in one send."""

    header_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_headers = False
        self._deadline: asyncio.TimerHandle | None = None
        self._idle_since: float | None = None  # the end of the last response, while idle
        self._keep_alive: asyncio.TimerHandle | None = None
        self._whole = self.app if isinstance(self.app, AnswersWhole) else None
        self._waiting: tuple[RequestResponseCycle, Any] | None = None  # its body still to come
        self._head = 0  # bytes of the request line and headers parsed so far
        self._head_read = 0  # bytes of reads that were all head (one header may be long)
        self._last_word: bytes | None = None  # a 400 waiting for the answers before it
        self._client_done = False  # the client closed its side: close once it is answered
        self._began = False  # a request began in the read at hand
        self._held = b""  # the start of a header line that may be an Upgrade: with the next read

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = QueueFlow(transport, self.pipeline)
        self.transport = cast(asyncio.Transport, OneSendPerResponse(transport))
        self._arm()  # a connection that sends nothing at all is closed too

    def data_received(self, data: bytes) -> None:
        if self._last_word is not None:
            return  # after bytes that are no request, nothing is read
        if self._held:
            data, self._held = self._held + data, b""
        continued, self._began = self._in_headers, False
        lowered = data.lower()
        if _UPGRADE in lowered or b"\r" in lowered[1 - len(_UPGRADE) :]:  # not a body's end
            self._feed_without_upgrade(data, lowered)
        else:  # nearly every POST: its read ends in its body
            HttpToolsProtocol.data_received(self, data)
        if continued and self._in_headers and not self._began:  # all of it head: a long header
            self._head_read += len(data)
            if self._head_read > MAX_HEAD:
                self.send_400_response("")
                return
        if self._in_headers and self._deadline is None:
            self._arm()
        if self._waiting is not None:  # its body did not come with its headers: ASGI reads it
            cycle, app = self._waiting
            self._waiting = None
            super()._start_asgi_task(cycle, app)

    def _feed_without_upgrade(self, data: bytes, lowered: bytes) -> None:
        """Parse the read with every ``Upgrade:`` header renamed (as long), holding back for the
        next read its tail where it is head and may start one: from its CR (never a head's final
        CRLF, which nothing more may follow). So no such line is ever split between reads."""
        if _UPGRADE in lowered:
            renamed = bytearray(data)
            for found in _UPGRADE_AT.finditer(lowered):
                renamed[found.start() + 2 : found.start() + 9] = b"x-upgrd"
            data = bytes(renamed)
        line = lowered.rfind(b"\r", len(lowered) - len(_UPGRADE) + 1)
        if line < 0 or not _UPGRADE.startswith(lowered[line:]) or lowered.endswith(_HEAD_END):
            line = len(data)  # nothing to hold back
        if line:
            HttpToolsProtocol.data_received(self, data[:line])
        if line == len(data) or self._last_word is not None:
            return
        if self._in_headers:  # its line goes on in the next read
            self._held = data[line:]
        else:
            HttpToolsProtocol.data_received(self, data[line:])

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        """uvicorn starts a request here as soon as its headers are parsed, mid-read."""
        if self.transport.is_closing():
            return  # read after an answer that closed the connection: none can reach the client
        if self._answerable(cycle, app):  # on_message_complete answers it if its body is here
            self._waiting = cycle, app
        else:
            super()._start_asgi_task(cycle, app)

    def _start_queued(self, cycle: RequestResponseCycle, app: Any) -> None:
        """A pipelined request, once the one before it is answered: whole if its body is in."""
        if self.transport.is_closing():
            return
        if self._answerable(cycle, app) and not cycle.more_body:
            self._answer_whole(cycle)
        else:
            super()._start_asgi_task(cycle, app)

    def _answerable(self, cycle: RequestResponseCycle, app: Any) -> bool:
        return (
            self._whole is not None
            and app is self.app
            and not self.flow.write_paused  # a client not reading its answers: ASGI's send waits
            and self._whole.answers_whole(cast(Scope, cycle.scope))
        )

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._waiting is not None:
            self._waiting = None
            self._answer_whole(self.cycle)

    def _answer_whole(self, cycle: RequestResponseCycle) -> None:
        assert self._whole is not None
        scope, body = cast(Scope, cycle.scope), bytes(cycle.body)
        self._whole.answer_whole(scope, body, functools.partial(self._reply, cycle))

    def _reply(
        self, cycle: RequestResponseCycle, status: int, body: bytes, headers: Headers
    ) -> None:
        """Write a whole answer as uvicorn's ``RequestResponseCycle.send`` would, in one piece."""
        if cycle.disconnected or self.transport.is_closing():
            return  # the client left (uvicorn marks only the last request it read)
        given = [value.lower() for name, value in headers if name == b"connection"]
        if any(b"close" in value for value in given):
            cycle.keep_alive = False
        cycle.response_complete = True
        close = not cycle.keep_alive and not given
        self.transport.write(self._json_response(status, body, headers, close))
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()

    def _json_response(self, status: int, body: bytes, headers: Headers, close: bool) -> bytes:
        """A whole JSON response, with uvicorn's default headers (its date)."""
        head = [STATUS_LINE[status]]
        for name, value in (*self.server_state.default_headers, *headers):
            head += [name, b": ", value, b"\r\n"]
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body))
        head += [b"connection: close\r\n\r\n" if close else b"\r\n", body]
        return b"".join(head)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._began = True
        self._head = self._head_read = 0
        self._idle_since = None  # busy until this request's response ends

    def on_header(self, name: bytes, value: bytes) -> None:
        # On every request: uvicorn's own callback called directly, no super() to resolve.
        self._head += len(name) + len(value) + 4  # ": " and CRLF
        if self._head > MAX_HEAD:  # the parser reports it as an error: send_400_response
            raise ValueError("request head too large")
        HttpToolsProtocol.on_header(self, name, value)

    def on_headers_complete(self) -> None:
        self._head += len(self.url)  # a URL longer than a read is counted as it is read
        if self._head > MAX_HEAD:
            raise ValueError("request head too large")
        self._in_headers = False
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        """uvicorn's, but for its keep-alive timer (see the module's documentation)."""
        cast(OneSendPerResponse, self.transport).flush()
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        if self._last_word is None:
            self.flow.resume_reading()
        if self.pipeline:  # a request that came while this one was answered goes next
            cycle, app = self.pipeline.pop()
            # Not at once: answered whole, it may end here again, for each request queued.
            self.loop.call_soon(self._start_queued, cycle, app)
            return
        if self._last_word is not None or self._client_done:  # nothing more to answer
            if self._last_word is not None:
                self.transport.write(self._last_word)
            self.transport.close()
            return
        if self._in_headers:
            return  # the next request began before this answer: busy, not idle
        self._idle_since = self.loop.time()
        if self._keep_alive is None:
            self._keep_alive = self.loop.call_at(
                self._idle_since + self.timeout_keep_alive, self._close_if_idle
            )

    def _close_if_idle(self) -> None:
        self._keep_alive = None
        if self._idle_since is None:
            return  # busy: the end of its response arms the timer again
        deadline = self._idle_since + self.timeout_keep_alive
        if self.loop.time() >= deadline:
            self.timeout_keep_alive_handler()
        else:
            self._keep_alive = self.loop.call_at(deadline, self._close_if_idle)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's, for bytes that are no request, with ``{"error": msg}`` as JSON (a 431 for a
        head too long); after the answers to the requests read before them."""
        if self._last_word is not None:
            return  # the parser failed already: nothing after that is read
        status = 400
        if max(self._head, self._head_read) > MAX_HEAD:
            status, msg = 431, f"Request line and headers too large: at most {MAX_HEAD} bytes"
        answer = self._json_response(status, encode(Error(msg)), (), close=True)
        self._in_headers = False
        self._disarm()
        if self._answering():
            self._last_word = answer
            self.flow.pause_reading()
            return
        self.transport.write(answer)
        self.transport.close()

    def _answering(self) -> bool:
        """Whether a request read whole is not answered yet."""
        cycle = self.cycle
        return bool(self.pipeline) or (
            cycle is not None and not cycle.response_complete and not cycle.more_body
        )

    def eof_received(self) -> bool:  # type: ignore[override]  # asyncio's may return True
        """The client closed its side: keep ours open for the answers to the requests it sent
        whole (``on_response_complete`` closes it then), else close."""
        self._client_done = True
        return self._answering()

    def connection_lost(self, exc: Exception | None) -> None:
        self._waiting = None
        self._disarm()
        if self._keep_alive is not None:
            self._keep_alive.cancel()
            self._keep_alive = None
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self._held_back():  # the rest of the head waits for us, not for the client
            self._arm()
        elif self._in_headers or self.cycle is None:  # still in headers, or never began one
            self.transport.close()

    def _held_back(self) -> bool:
        """Whether reading is paused behind requests read before (queued, or the last of them
        still answered): till they are answered, the server leaves the rest of a head unread."""
        answering = self.cycle is not None and not self.cycle.response_complete
        return self.flow.read_paused and (bool(self.pipeline) or answering)


class QueueFlow(FlowControl):
    """uvicorn's flow control, but reading stays paused while pipelined requests wait."""

    def __init__(self, transport: asyncio.Transport, waiting: Sized) -> None:
        super().__init__(transport)
        self._waiting = waiting

    def resume_reading(self) -> None:
        if not self._waiting:
            super().resume_reading()


class OneSendPerResponse:
    """A transport that holds a response's status line and headers back until its first body
    bytes, its end or the connection's close, so that both leave in one system call; and drops
    what is written once it is closing (a request answered after its client left)."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held = b""
        self.is_closing = transport.is_closing  # called on every request: bound once

    def write(self, data: bytes) -> None:
        if self.is_closing():
            return  # the client left or the answer closed it: uvloop would raise
        if self._held:
            data, self._held = self._held + data, b""
        elif data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 100 "):
            self._held = data  # a 100 Continue goes at once: the client waits for it
            return
        self._transport.write(data)

    def flush(self) -> None:
        """Send what is held: the response ended without a body."""
        if self._held:
            self._transport.write(self._held)
            self._held = b""

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def with_header_timeout(seconds: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``."""
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout": seconds})
