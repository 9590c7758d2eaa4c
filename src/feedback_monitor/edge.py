"""The outermost ASGI layer: the gate, the hot path, error mapping, and a measurement of every
request.

``POST /feedback`` is dispatched here straight to its raw ASGI handler: Starlette's routing,
middleware and request objects cost about 40% of the throughput ceiling on that path (measured by
``make bench``). Every other route goes through Starlette. Client errors raised anywhere become
4xx JSON answers; anything else is a bug: a 500 with the seed's body and a logged traceback.
A ``gate`` (auth, rate limit; see ``gate.py``) runs before any route when one is configured.
"""

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from feedback_monitor.errors import HTTPError
from feedback_monitor.schemas import Error, encode
from feedback_monitor.telemetry import Telemetry

log = logging.getLogger(__name__)

_CONTENT_TYPE = (b"content-type", b"application/json")
_INTERNAL_ERROR = encode(Error("Internal server error"))

Handler = Callable[[Scope, Receive], Awaitable[bytes]]
"""A raw handler: takes the request, returns a 200 JSON body or raises."""

Gate = Callable[[Scope], None]
"""Checks a request before its route; raises ``HTTPError`` to refuse it."""

Headers = Sequence[tuple[bytes, bytes]]


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
        fast_routes: Mapping[tuple[str, str], Handler],
        telemetry: Telemetry,
        routes: set[str],
        gate: Gate | None = None,
    ) -> None:
        self.app = app
        self.fast_routes = fast_routes
        self.telemetry = telemetry
        self.routes = routes
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        handler = self.fast_routes.get((scope["method"], scope["path"]))
        try:
            if self.gate is not None:
                self.gate(scope)
            if handler is not None:  # the hot path: no coroutine of ours in between
                body = await handler(scope, receive)
        except HTTPError as error:
            status = await self._refuse(scope, send, error)
        except Exception:
            log.exception("internal error on %s %s", scope["method"], scope["path"])
            await send_json(send, 500, _INTERNAL_ERROR)
            status = 500
        else:
            if handler is None:
                status = await self._through_app(scope, receive, send)
            else:
                await send_json(send, 200, body)
                status = 200
        route = scope["path"] if handler is not None else self._template(scope)
        self.telemetry.observe_request(route, status, time.perf_counter() - start)

    def _template(self, scope: Scope) -> str:
        """The route's template, which Starlette leaves in the scope; bounded."""
        route = getattr(scope.get("route"), "path", scope["path"])
        return route if route in self.routes else "other"

    async def _refuse(self, scope: Scope, send: Send, error: HTTPError) -> int:
        status = reject(self.telemetry, scope["method"], scope["path"], error)
        await send_json(
            send, status, encode(Error(error.message, error.index)), error.raw_headers()
        )
        return status

    async def _through_app(self, scope: Scope, receive: Receive, send: Send) -> int:
        status = 0  # no response started yet

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
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
    else:  # the service's own trouble, not the client's: the log gets the detail
        log.error("unavailable %s %s: %d %s: %s", method, path, status, error.reason, error)
    return status
