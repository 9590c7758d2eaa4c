"""The HTTP edge: routes, body limits and the mapping of errors to status codes."""

import contextlib
import logging
from collections.abc import AsyncIterator

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from feedback_monitor import openapi
from feedback_monitor.collector import FeedbackCollector
from feedback_monitor.errors import ClientError
from feedback_monitor.observed import Observed, internal_error
from feedback_monitor.recorder import Recorder
from feedback_monitor.records import InvalidFeedback, parse_feedback
from feedback_monitor.schemas import Error, FeedbackAccepted, Metrics, Status, encode
from feedback_monitor.settings import Settings
from feedback_monitor.store import Store
from feedback_monitor.store.sqlite import SQLiteStore
from feedback_monitor.telemetry import Telemetry

log = logging.getLogger(__name__)

JSON = "application/json"


def json_response(body: object, status: int = 200) -> Response:
    return Response(encode(body), status, media_type=JSON)


async def read_json_body(request: Request, limit: int) -> bytes:
    """The body of a JSON request, refusing other media types and bodies over ``limit``."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != JSON:
        raise ClientError(415, "Content-Type must be application/json", "unsupported_media_type")
    too_large = ClientError(413, f"Body larger than {limit} bytes", "body_too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


class Service:
    """The endpoints, bound to one recorder and one set of settings."""

    def __init__(
        self,
        settings: Settings,
        recorder: Recorder,
        registry: CollectorRegistry,
        telemetry: Telemetry,
    ) -> None:
        self.settings = settings
        self.recorder = recorder
        self.registry = registry
        self.telemetry = telemetry
        self.openapi = encode(openapi.document())

    async def post_feedback(self, request: Request) -> Response:
        body = await read_json_body(request, self.settings.max_body_bytes)
        counts = await self.recorder.record(parse_feedback(body))
        return json_response(FeedbackAccepted(True, Metrics.of(counts)))

    async def metrics(self, request: Request) -> Response:
        # prometheus_client's own negotiation: OpenMetrics when the Accept header asks for it.
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(self.registry), media_type=content_type)

    async def health(self, request: Request) -> Response:
        return json_response(Status("ok"))

    async def ready(self, request: Request) -> Response:
        try:
            await self.recorder.ping()
        except Exception:
            log.warning("store does not answer", exc_info=True)
            return json_response(Error("Store unavailable"), 503)
        return json_response(Status("ready"))

    async def get_openapi(self, request: Request) -> Response:
        return Response(self.openapi, media_type=JSON)

    async def client_error(self, request: Request, error: Exception) -> Response:
        assert isinstance(error, ClientError | InvalidFeedback)
        status = getattr(error, "status", 400)
        self.telemetry.validation_errors.labels(error.reason).inc()
        log.info(
            "rejected %s %s: %d %s: %s",
            request.method, request.url.path, status, error.reason, error.message,
        )  # fmt: skip
        return json_response(Error(error.message), status)

    async def http_error(self, request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        log.info("rejected %s %s: %d", request.method, request.url.path, error.status_code)
        return json_response(Error(error.detail), error.status_code)


def create_app(
    settings: Settings, store: Store | None = None, registry: CollectorRegistry | None = None
) -> Observed:
    """The ASGI application; the store opens at startup (SQLite under ``data_dir`` by default)."""
    registry = registry or CollectorRegistry()
    telemetry = Telemetry(registry)
    recorder = Recorder(
        store or SQLiteStore(settings.data_dir), telemetry.commit_batch_size.observe
    )
    registry.register(FeedbackCollector(lambda: recorder.snapshot))
    service = Service(settings, recorder, registry, telemetry)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await recorder.start()
        log.info("ready: %d series loaded", len(recorder.snapshot))
        try:
            yield
        finally:
            await recorder.close()
            log.info("stopped: every queued feedback committed")

    routes = [
        Route("/feedback", service.post_feedback, methods=["POST"]),
        Route("/metrics", service.metrics, methods=["GET"]),
        Route("/health", service.health, methods=["GET"]),
        Route("/ready", service.ready, methods=["GET"]),
        Route("/openapi.json", service.get_openapi, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ClientError: service.client_error,
            InvalidFeedback: service.client_error,
            HTTPException: service.http_error,
            Exception: internal_error,
        },
    )
    return Observed(app, telemetry, {route.path for route in routes})
