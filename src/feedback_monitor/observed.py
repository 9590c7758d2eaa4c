"""The outermost ASGI layer: times every request, counts its status, turns bugs into 500s."""

import logging
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from feedback_monitor.schemas import Error, encode
from feedback_monitor.telemetry import Telemetry

log = logging.getLogger(__name__)

_INTERNAL_ERROR = encode(Error("Internal server error"))


class Observed:
    """Wraps an ASGI app so that no request goes unmeasured and no bug leaks out as a 400."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry, routes: set[str]) -> None:
        self.app = app
        self.telemetry = telemetry
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
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
                await _send_internal_error(send)
            status = 500
        finally:
            route = scope["path"] if scope["path"] in self.routes else "other"
            self.telemetry.observe_request(route, status, time.perf_counter() - start)


async def internal_error(request: Request, error: Exception) -> Response:
    """Starlette's answer to an unhandled exception; ``Observed`` logs it when it re-raises."""
    return Response(_INTERNAL_ERROR, 500, media_type="application/json")


async def _send_internal_error(send: Send) -> None:
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": _INTERNAL_ERROR})
