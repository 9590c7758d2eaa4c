"""uvicorn's httptools protocol with a deadline on request headers, and one send per response.

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
same closes, without a timer per request (about 2 µs of a request's 38 on ``POST /feedback``).

Bytes that are no HTTP request get uvicorn's 400 and close, with the service's JSON error body
instead of uvicorn's plain text, as every other error has.
"""

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from feedback_monitor.schemas import Error, encode


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

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = cast(asyncio.Transport, OneSendPerResponse(transport))
        self._arm()  # a connection that sends nothing at all is closed too

    def data_received(self, data: bytes) -> None:
        self._idle_since = None
        super().data_received(data)
        if self._in_headers and self._deadline is None:
            self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        """uvicorn's, but for its keep-alive timer (see the module's documentation)."""
        cast(OneSendPerResponse, self.transport).flush()
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:  # a request that came while this one was answered goes next
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
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
        """uvicorn's, with ``{"error": msg}`` as JSON."""
        body = encode(Error(msg))
        head = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/json\r\n",
                 b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n"]  # fmt: skip
        self.transport.write(b"".join(head) + body)
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
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
        if self._in_headers or self.cycle is None:  # still in headers, or never began a request
            self.transport.close()


class OneSendPerResponse:
    """A transport that holds a response's status line and headers back until its first body
    bytes, its end or the connection's close, so that both leave in one system call."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held = b""
        self.is_closing = transport.is_closing  # called on every request: bound once

    def write(self, data: bytes) -> None:
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
