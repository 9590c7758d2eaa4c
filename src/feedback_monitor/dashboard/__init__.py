"""The built-in dashboard: one page at ``GET /`` and its static files under ``/static``.

The page draws what the JSON API answers (``/api/v1/models`` and the chosen series' metrics,
series and drift) and polls it every few seconds. Its one script is plain JavaScript; the charts
are uPlot's, kept in ``static/vendor/uplot`` with its licence: no build step, no CDN.
"""

import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route, request_response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["STATIC", "routes"]

STATIC = Path(__file__).parent / "static"
# Revalidated on every load (the ETag makes that a 304): an upgraded service serves its new
# page and script at once, and never a new page with an old script.
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
# The service's own files only: no inline script or style, nothing from elsewhere.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


class _Whole:
    """An ASGI app asked for whole files only: a Range request header is dropped. The files
    are small, and Starlette answers a Range it cannot read with a 400 in plain text, where
    RFC 9110 says to ignore it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"range", b"if-range")]
        await self.app({**scope, "headers": headers}, receive, send)


class StaticAssets(StaticFiles):
    """The files under ``static/``, with the dashboard's cache headers; served by a ``Route``
    (not a ``Mount``) so that the application's routes are all ``Route``s with a template."""

    def get_path(self, scope: Scope) -> str:
        # lookup_path() refuses whatever normalises to outside the directory.
        path: str = scope["path_params"]["path"]
        return os.path.normpath(path)

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        # The policy too: the page is also at /static/index.html, where it must not be framed.
        response.headers.update({**HEADERS, "Content-Security-Policy": POLICY})
        return response


async def page(request: Request) -> Response:
    return FileResponse(
        STATIC / "index.html",
        media_type="text/html; charset=utf-8",
        headers={**HEADERS, "Content-Security-Policy": POLICY},
    )


def routes() -> list[Route]:
    """``GET /`` and ``GET /static/{path}``, to add to the application's routes; a page, not
    the API, so the OpenAPI document leaves them out."""
    assets = StaticAssets(directory=STATIC)
    return [
        Route("/", _Whole(request_response(page)), methods=["GET"], include_in_schema=False),
        Route("/static/{path:path}", _Whole(assets), methods=["GET"], include_in_schema=False),
    ]
