"""The app in process for unit tests: requests through httpx's ASGI transport with the app's
lifespan, and answers checked against the OpenAPI document with jsonschema."""

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from starlette.applications import Starlette

from feedback_monitor.app import create_app
from feedback_monitor.edge import Edge
from feedback_monitor.errors import StoreError
from feedback_monitor.openapi import document
from feedback_monitor.settings import Settings
from feedback_monitor.store import (
    Accepted,
    AsyncStore,
    DriftEvent,
    Entry,
    Point,
    Refused,
    Series,
    Totals,
    Window,
)
from feedback_monitor.windows import Span, TimeView

DOC = document()
LIMIT = 300_000  # room for the absurd-nesting body, which is smaller
BATCH_LIMIT = 4096
MAX_SERIES = 2
MAX_ITEMS = 3
JSON = {"content-type": "application/json"}
ERROR = {"$ref": "#/components/schemas/Error"}
UNDOCUMENTED = {404, 405}  # no operation lists them; they must still be the documented Error


class BrokenStore:
    """A store that loads, then fails as the child store does when its process is gone."""

    def load(self) -> Totals:
        return {}

    def write(
        self, entries: Sequence[Entry], now: float
    ) -> tuple[list[Accepted | Refused], Totals]:
        raise StoreError("store process exited with -9")

    def expire(self, before: float, cutoffs: Mapping[int, float] | None = None) -> Totals:
        return {}

    def window(self, series: Series, view: TimeView, spans: Sequence[Span]) -> Window:
        raise StoreError("store process exited with -9")

    def points(self, series: Series, view: TimeView, span: Span, step: int) -> list[Point]:
        raise StoreError("store process exited with -9")

    def events(self, series: Series, limit: int) -> list[DriftEvent]:
        raise StoreError("store process exited with -9")

    def ping(self) -> None:
        raise StoreError("store process exited with -9")

    def close(self) -> None:
        pass


def app(data_dir: Path, store: AsyncStore, **overrides: Any) -> Edge:
    settings: dict[str, Any] = {
        "data_dir": data_dir,
        "max_body_bytes": LIMIT,
        "max_series": MAX_SERIES,
        "max_batch_items": MAX_ITEMS,
        "max_batch_body_bytes": BATCH_LIMIT,
        **overrides,
    }
    return create_app(Settings(**settings), store=store)  # (** because mypy misreads Field())


def starlette_of(edge: Edge) -> Starlette:
    assert isinstance(edge.app, Starlette)
    return edge.app


def exchange(
    store: AsyncStore, data_dir: Path, *requests: httpx.Request, **settings: Any
) -> list[httpx.Response]:
    """The requests in turn to a started app (``settings`` over the small limits above); the
    store is closed again afterwards."""
    edge = app(data_dir, store, **settings)

    async def main() -> list[httpx.Response]:
        inner = starlette_of(edge)
        responses = []
        async with inner.router.lifespan_context(inner):
            transport = httpx.ASGITransport(app=edge)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                for request in requests:
                    responses.append(await client.send(request))
                    await responses[-1].aread()
        return responses

    return asyncio.run(main())


def post(
    body: bytes | object, headers: dict[str, str] = JSON, path: str = "/feedback"
) -> httpx.Request:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Request("POST", "http://test" + path, content=content, headers=headers)


def get(path: str, headers: dict[str, str] | None = None) -> httpx.Request:
    return httpx.Request("GET", "http://test" + path, headers=headers)


def schema_of(ref_or_schema: dict[str, Any]) -> Draft202012Validator:
    """A validator that resolves the document's ``#/components/...`` references."""
    return Draft202012Validator({**ref_or_schema, "components": DOC["components"]})


def documented(request: httpx.Request, status: int) -> dict[str, Any] | None:
    operation = DOC["paths"].get(request.url.path, {}).get(request.method.lower(), {})
    response: dict[str, Any] | None = operation.get("responses", {}).get(str(status))
    return response


def assert_documented(request: httpx.Request, response: httpx.Response) -> None:
    media_type = response.headers.get("content-type", "").partition(";")[0].strip()
    if response.status_code in UNDOCUMENTED:
        assert media_type == "application/json"
        schema_of(ERROR).validate(response.json())
        return
    entry = documented(request, response.status_code)
    assert entry is not None, f"{request.method} {request.url.path} {response.status_code}"
    assert media_type in entry["content"]
    schema = entry["content"][media_type]["schema"]
    body = response.json() if media_type == "application/json" else response.text
    schema_of(schema).validate(body)
