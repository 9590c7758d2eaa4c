"""The outermost ASGI layer: the gate, the hot path, error mapping, and a measurement of every
request.

``POST /feedback`` is a fast route: its whole body checked, handed in and answered without
Starlette, whose routing, middleware and request objects cost about 40% of the throughput
ceiling on that path (measured by ``make bench``). When its body came with its headers (nearly
always), the server protocol hands it over whole (``answer_whole``) and no ASGI task runs at
all (``protocol.py``); otherwise it is read through ASGI. Every other route goes through
Starlette. Client errors raised anywhere become 4xx JSON answers; anything else is a bug: a 500
with the seed's body and a logged traceback. A ``gate`` (auth, rate limit; see ``gate.py``) runs
before any route when one is configured.
"""

import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from feedback_monitor.body import Deadlines, check_whole_body, read_json_body
from feedback_monitor.errors import HTTPError, Unavailable
from feedback_monitor.protocol import Headers, Reply
from feedback_monitor.schemas import Error, encode
from feedback_monitor.telemetry import Telemetry

log = logging.getLogger(__name__)

_CONTENT_TYPE = (b"content-type", b"application/json")
_INTERNAL_ERROR = encode(Error("Internal server error"))
# The server stops waiting for requests at shutdown (--shutdown-timeout) by cancelling them.
_SHUTTING_DOWN = Unavailable("Service is shutting down", "shutting_down")  # nothing handed in
_CUT_OFF = HTTPError(
    503, "Service stopped before answering: any write in this request may be stored", "cut_off"
)

Gate = Callable[[Scope], None]
"""Checks a request before its route; raises ``HTTPError`` to refuse it."""

UNAVAILABLE_LOG_EVERY = 10.0  # seconds between log lines of one reason of 5xx answers


class ThrottledLog:
    """Logs the first error of each reason, then at most one every ``every`` seconds, saying
    how many were left out since the last: an outage (a full disk fails every write) shows in
    the log, not a line per request. Those left out after a reason's last line are counted in
    its next one; the request metrics count each as it happens."""

    def __init__(
        self, logger: logging.Logger, every: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.every = every
        self.clock = clock
        self._reasons: dict[str, tuple[float, int]] = {}  # when last logged, and left out since

    def error(self, reason: str, message: str, *args: object) -> None:
        now = self.clock()
        logged_at, left_out = self._reasons.get(reason, (-math.inf, 0))
        if now - logged_at < self.every:
            self._reasons[reason] = logged_at, left_out + 1
            return
        self._reasons[reason] = now, 0
        if left_out:
            message += " (and %d more %s in the %.0f s since its last line, not logged)"
            args = (*args, left_out, reason, now - logged_at)
        self.logger.error(message, *args)


# As the log it writes to, one for the process: the edge and the app's routes share it.
_unavailable_log = ThrottledLog(log, UNAVAILABLE_LOG_EVERY)


@dataclass(frozen=True)
class FastRoute:
    """A route answered from its whole JSON body (at most ``max_body`` bytes): ``submit`` checks
    it and hands its work in (raising ``HTTPError`` to refuse it), ``render`` makes the 200 body
    of the outcome."""

    submit: Callable[[bytes], Awaitable[Any]]
    render: Callable[[Any], bytes]
    max_body: int


async def send_json(send: Send, status: int, body: bytes, extra: Headers = ()) -> None:
    # With a Content-Length the server need not fall back to chunked encoding.
    headers = [_CONTENT_TYPE, (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def internal_error(request: Request, error: Exception) -> Response:
    """Starlette's answer to an unhandled exception; ``Edge`` logs it when it re-raises."""
    return Response(_INTERNAL_ERROR, 500, media_type="application/json")


class Edge:
    """Serves ``fast_routes`` directly and the rest through ``app``, measuring every request."""

    def __init__(
        self,
        app: ASGIApp,
        fast_routes: Mapping[tuple[str, str], FastRoute],
        telemetry: Telemetry,
        routes: set[str],
        deadlines: Deadlines,
        gate: Gate | None = None,
    ) -> None:
        self.app = app
        self.fast_routes = fast_routes
        self.telemetry = telemetry
        self.routes = routes
        self.deadlines = deadlines
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        route = self.fast_routes.get((scope["method"], scope["path"]))
        handed_in = False
        try:
            if self.gate is not None:
                self.gate(scope)
            if route is not None:
                body = await read_json_body(scope, receive, route.max_body, self.deadlines)
                handed_in = True
                body = route.render(await route.submit(body))
        except (Exception, asyncio.CancelledError) as error:
            failure: BaseException = error
            if isinstance(error, asyncio.CancelledError):
                failure = _CUT_OFF if handed_in else _SHUTTING_DOWN
            status, body, headers = self._failure((scope["method"], scope["path"]), failure)
            await send_json(send, status, body, headers)
        else:
            if route is None:
                status = await self._through_app(scope, receive, send)
            else:
                await send_json(send, 200, body)
                status = 200
        path = scope["path"] if route is not None else self._template(scope)
        self.telemetry.observe_request(path, status, time.perf_counter() - start)

    def answers_whole(self, scope: Scope) -> bool:
        """Whether ``answer_whole`` can answer the request once its body is read."""
        return (scope["method"], scope["path"]) in self.fast_routes

    def answer_whole(self, scope: Scope, body: bytes, reply: Reply) -> None:
        """Answer a fast route's request from its whole body, through ``reply``, without a task
        when the work handed in is a future (for ``POST /feedback``, a stored series'). Every
        request gets one reply: nothing raised here reaches the server."""
        start = time.perf_counter()
        request = scope["method"], scope["path"]  # what a log may name: never the headers
        route = self.fast_routes[request]
        try:
            if self.gate is not None:
                self.gate(scope)
            check_whole_body(scope, body, route.max_body)
            outcome = asyncio.ensure_future(route.submit(body))
        except Exception as error:
            self._reply(request, reply, start, *self._failure(request, error))
            return
        outcome.add_done_callback(functools.partial(self._answered, request, route, reply, start))

    def _answered(
        self,
        request: tuple[str, str],
        route: FastRoute,
        reply: Reply,
        start: float,
        outcome: "asyncio.Future[Any]",
    ) -> None:
        answer: tuple[int, bytes, Headers]
        try:
            answer = 200, route.render(outcome.result()), ()
        except (Exception, asyncio.CancelledError) as error:
            answer = self._failure(request, error)
        self._reply(request, reply, start, *answer)

    def _reply(
        self,
        request: tuple[str, str],
        reply: Reply,
        start: float,
        status: int,
        body: bytes,
        headers: Headers,
    ) -> None:
        reply(status, body, headers)
        self.telemetry.observe_request(request[1], status, time.perf_counter() - start)

    def _failure(
        self, request: tuple[str, str], error: BaseException
    ) -> tuple[int, bytes, Headers]:
        """The answer to an error: a refusal's own, or a 500 for anything else (a bug)."""
        method, path = request
        if isinstance(error, HTTPError):
            status = reject(self.telemetry, method, path, error)
            return status, encode(Error(error.message, error.index)), error.raw_headers()
        log.error("internal error on %s %s", method, path, exc_info=error)
        return 500, _INTERNAL_ERROR, ()

    def _template(self, scope: Scope) -> str:
        """The route's template, which Starlette leaves in the scope; bounded."""
        route = getattr(scope.get("route"), "path", scope["path"])
        return route if route in self.routes else "other"

    async def _through_app(self, scope: Scope, receive: Receive, send: Send) -> int:
        status = 0  # no response started yet

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except asyncio.CancelledError:  # the server stopped waiting for it at shutdown
            if not status:
                status, body, _ = self._failure((scope["method"], scope["path"]), _CUT_OFF)
                await send_json(send, status, body)
        except Exception:
            log.exception("internal error on %s %s", scope["method"], scope["path"])
            if not status:  # Starlette may already have answered through internal_error()
                await send_json(send, 500, _INTERNAL_ERROR)
            status = 500
        return status


def reject(telemetry: Telemetry, method: str, path: str, error: HTTPError) -> int:
    """Count and log a refused request, return its status; request bodies are never logged."""
    status = error.status
    if status < 500:
        telemetry.validation_errors.labels(error.reason).inc()
        log.info("rejected %s %s: %d %s: %s", method, path, status, error.reason, error.message)
    else:  # the service's own trouble, not the client's: the log gets the detail, throttled
        message = "unavailable %s %s: %d %s: %s"
        _unavailable_log.error(error.reason, message, method, path, status, error.reason, error)
    return status
