"""The endpoints and the application; ``edge.py`` maps errors to status codes."""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from feedback_monitor import dashboard, openapi
from feedback_monitor.body import Deadlines, read_json_body
from feedback_monitor.edge import Edge, FastRoute, internal_error, reject
from feedback_monitor.errors import HTTPError, StoreError
from feedback_monitor.exposition import Exposition
from feedback_monitor.gate import Gate
from feedback_monitor.query import (
    UnknownSeries,
    drift_answer,
    drift_query,
    drift_spans,
    no_parameters,
    points_query,
    series_answer,
    window_answer,
    window_query,
    window_spans,
)
from feedback_monitor.recorder import Recorder
from feedback_monitor.records import (
    parse_feedback,
    parse_feedback_batch,
    parse_prediction,
    parse_prediction_batch,
)
from feedback_monitor.schemas import (
    BatchAccepted,
    Error,
    Models,
    PredictionAccepted,
    PredictionBatchAccepted,
    Status,
    encode,
    feedback_accepted,
    model_summary,
    series_metrics,
)
from feedback_monitor.series import Series
from feedback_monitor.settings import Settings
from feedback_monitor.store import Accepted, AsyncStore
from feedback_monitor.store.child import ChildStore
from feedback_monitor.telemetry import Telemetry
from feedback_monitor.windows import TimeView

log = logging.getLogger(__name__)

T = TypeVar("T")
READY_TIMEOUT = 2.0  # seconds the write probe of /ready may take
EXPIRY_INTERVAL = 60.0  # seconds between sweeps for expired predictions
REFRESH = 1.0  # seconds between reloads of every series from a shared store


# Starlette's own refusals (no such route, a method the route lacks), by a reason of ours.
_ROUTING_REASONS = {404: "not_found", 405: "method_not_allowed"}


def json_response(body: object, status: int = 200) -> Response:
    return Response(encode(body), status, media_type="application/json")


class Service:
    """The endpoints, bound to one recorder and one set of settings."""

    def __init__(
        self,
        settings: Settings,
        store: AsyncStore,
        registry: CollectorRegistry,
        telemetry: Telemetry,
    ) -> None:
        self.settings = settings
        self.retention = settings.retention
        self.store = store
        refresh = REFRESH if settings.store else None  # replicas: see what the others wrote
        self.recorder = recorder = Recorder(
            store, settings.max_series, refresh, settings.write_timeout
        )
        self.registry = registry
        self.telemetry = telemetry
        self.exposition = Exposition(lambda: recorder.snapshot)
        self.openapi = encode(openapi.document())
        self.config_json = encode(settings.public())
        self.deadlines = Deadlines(settings.body_timeout)

    def feedback(self, body: bytes) -> Awaitable[Accepted]:
        """POST /feedback, the hot path, as a fast route (see ``edge.Edge``)."""
        return self.recorder.record(parse_feedback(body))

    def feedback_answer(self, outcome: Accepted) -> bytes:
        counts = self.recorder.state(outcome.series[0]).counts
        return feedback_accepted(counts, outcome.duplicates > 0)

    async def _body(self, request: Request, limit: int) -> bytes:
        return await read_json_body(request.scope, request.receive, limit, self.deadlines)

    async def feedback_batch(self, request: Request) -> Response:
        body = await self._body(request, self.settings.max_batch_body_bytes)
        outcome = await self.recorder.write(
            parse_feedback_batch(body, self.settings.max_batch_items)
        )
        snapshot = self.recorder.snapshot
        metrics = [series_metrics(series, snapshot[series]) for series in outcome.series]
        return json_response(BatchAccepted(True, outcome.accepted, outcome.duplicates, metrics))

    async def prediction(self, request: Request) -> Response:
        body = await self._body(request, self.settings.max_body_bytes)
        outcome = await self.recorder.write([parse_prediction(body)], batch=False)
        return json_response(PredictionAccepted(True, outcome.duplicates > 0), 201)

    async def prediction_batch(self, request: Request) -> Response:
        body = await self._body(request, self.settings.max_batch_body_bytes)
        outcome = await self.recorder.write(
            parse_prediction_batch(body, self.settings.max_batch_items)
        )
        answer = PredictionBatchAccepted(True, outcome.accepted, outcome.duplicates)
        return json_response(answer, 201)

    async def window(self, request: Request) -> Response:
        """GET /api/v1/models/{model}/metrics: a window's metrics, intervals and scores."""
        query = window_query(
            request.path_params["model"], request.query_params, time.time(), self.retention
        )
        self._check_known(query.series)
        window = await self._read(self.store.window(query.series, query.view, window_spans(query)))
        costs = self.settings.costs_of(*query.series)
        return json_response(window_answer(query, window, costs))

    async def series(self, request: Request) -> Response:
        """GET /api/v1/models/{model}/series: points of a window, one per step."""
        query = points_query(
            request.path_params["model"], request.query_params, time.time(), self.retention
        )
        self._check_known(query.series)
        points = await self._read(
            self.store.points(query.series, query.view, query.span, query.step)
        )
        return json_response(series_answer(query, points))

    async def drift(self, request: Request) -> Response:
        """GET /api/v1/models/{model}/drift: detectors' statuses and the latest drifts."""
        series, limit = drift_query(request.path_params["model"], request.query_params)
        self._check_known(series)
        now, events = time.time(), []
        for event in await self._read(self.store.events(series, limit)):
            before, after = drift_spans(event.at, now, self.retention)
            accuracy = [
                await self._read(self.store.window(series, TimeView.ARRIVAL, s))
                for s in (before, after)
            ]
            events.append((event, accuracy[0].counts, accuracy[1].counts))
        state = self.recorder.snapshot[series]
        return json_response(drift_answer(series, state, events))

    async def _read(self, reading: Awaitable[T]) -> T:
        """A read of the store, given up after ``write_timeout`` as a write is: a store that
        hangs answers 503, and reads do not pile up behind it."""
        timeout = self.settings.write_timeout
        try:
            return await asyncio.wait_for(reading, timeout)
        except TimeoutError:
            raise StoreError(f"no answer to a read within {timeout:g} s") from None

    def _check_known(self, series: Series) -> None:
        if series not in self.recorder.snapshot:
            raise UnknownSeries

    async def config(self, request: Request) -> Response:
        """GET /api/v1/config: the settings in force (for reports and audits)."""
        return Response(self.config_json, media_type="application/json")

    async def models(self, request: Request) -> Response:
        no_parameters(request.query_params)
        snapshot = sorted(self.recorder.snapshot.items())
        return json_response(Models([model_summary(series, state) for series, state in snapshot]))

    async def post_feedback(self, request: Request) -> Response:
        """The same handler for a caller that reaches it through Starlette."""
        body = await self._body(request, self.settings.max_body_bytes)
        answer = self.feedback_answer(await self.feedback(body))
        return Response(answer, media_type="application/json")

    async def metrics(self, request: Request) -> Response:
        # prometheus_client's own negotiation: OpenMetrics when the Accept header asks for it.
        # It raises on a version it cannot compare ("version=abc"): such a header gets the
        # text format, as an Accept header naming nothing known does.
        try:
            encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        except (TypeError, ValueError):
            encoder, content_type = choose_encoder("")
        openmetrics = content_type.startswith("application/openmetrics-text")
        service = encoder(self.registry).decode().removesuffix("# EOF\n")
        feedback = self.exposition.render(openmetrics)
        body = service + feedback + ("# EOF\n" if openmetrics else "")
        return Response(body, media_type=content_type)

    async def health(self, request: Request) -> Response:
        return json_response(Status("ok"))

    async def ready(self, request: Request) -> Response:
        """GET /ready: 200 while the store takes writes. One whose last write answered was
        committed within ``--write-timeout`` (as long as the write path waits for a commit
        before its 503) is ready without a probe: under load the probe queues behind the
        writes, and a backfill's slow commits made it time out on a busy, healthy store.
        Otherwise (idle, a write failed, or none answered for that long) a real write must
        answer within ``READY_TIMEOUT``: a hung store or a full disk is not ready."""
        if self._committed_lately():
            return json_response(Status("ready"))
        try:
            await asyncio.wait_for(self.recorder.ping(), READY_TIMEOUT)
        except Exception:  # timeouts included: a hung store is not ready
            log.warning("store does not answer", exc_info=True)
            return json_response(Error("Store unavailable"), 503)
        return json_response(Status("ready"))

    def _committed_lately(self) -> bool:
        committed = self.recorder.committed_at
        now = asyncio.get_running_loop().time()
        return committed is not None and now - committed < self.settings.write_timeout

    async def get_openapi(self, request: Request) -> Response:
        return Response(self.openapi, media_type="application/json")

    async def refused(self, request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPError)
        status = reject(self.telemetry, request.method, request.url.path, error)
        response = json_response(Error(error.message, error.index), status)
        response.headers.update(error.headers)
        return response

    async def http_error(self, request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        reason = _ROUTING_REASONS.get(error.status_code, "http_error")
        self.telemetry.validation_errors.labels(reason).inc()
        log.info(
            "rejected %s %s: %d %s", request.method, request.url.path, error.status_code, reason
        )
        response = json_response(Error(error.detail), error.status_code)
        response.headers.update(error.headers or {})  # the Allow header of a 405
        return response


async def expire(recorder: Recorder, settings: Settings) -> None:
    """Drop unlabelled predictions past their TTL and time buckets past their retention: at
    start, then every so often."""
    ttl = settings.prediction_ttl.total_seconds()
    every = min(ttl / 10, EXPIRY_INTERVAL)
    while True:
        try:
            await recorder.expire(ttl, settings.retention)
        except Exception:  # the store may be down for a while; the next round tries again
            log.exception("expiring predictions failed")
        await asyncio.sleep(every)


def create_app(
    settings: Settings, store: AsyncStore | None = None, registry: CollectorRegistry | None = None
) -> Edge:
    """The ASGI application; the store opens at startup (SQLite under ``data_dir`` by default)."""
    registry = registry or CollectorRegistry()
    telemetry = Telemetry(registry)
    store = store or ChildStore(settings.data_dir, telemetry.observe_commit, settings.store)
    service = Service(settings, store, registry, telemetry)
    recorder = service.recorder

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await recorder.start()
        log.info("ready: %d series loaded", len(recorder.snapshot))
        expiry = asyncio.create_task(expire(recorder, settings))
        try:
            yield
        finally:
            expiry.cancel()
            if await recorder.close():
                log.info("stopped: every queued feedback committed")
            else:
                log.error(
                    "stopped: the store left a write unanswered, answered 503 (may be stored)"
                )

    routes = [
        Route("/feedback", service.post_feedback, methods=["POST"]),
        Route("/feedback/batch", service.feedback_batch, methods=["POST"]),
        Route("/predictions", service.prediction, methods=["POST"]),
        Route("/predictions/batch", service.prediction_batch, methods=["POST"]),
        Route("/api/v1/models", service.models, methods=["GET"]),
        Route("/api/v1/config", service.config, methods=["GET"]),
        Route("/api/v1/models/{model}/metrics", service.window, methods=["GET"]),
        Route("/api/v1/models/{model}/series", service.series, methods=["GET"]),
        Route("/api/v1/models/{model}/drift", service.drift, methods=["GET"]),
        Route("/metrics", service.metrics, methods=["GET"]),
        Route("/health", service.health, methods=["GET"]),
        Route("/ready", service.ready, methods=["GET"]),
        Route("/openapi.json", service.get_openapi, methods=["GET"]),
        *dashboard.routes(),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HTTPError: service.refused,
            HTTPException: service.http_error,
            Exception: internal_error,
        },
    )
    app.router.redirect_slashes = False  # /feedback/ is a JSON 404, not a redirect
    feedback = FastRoute(service.feedback, service.feedback_answer, settings.max_body_bytes)
    paths = {route.path for route in routes}
    return Edge(
        app,
        {("POST", "/feedback"): feedback},
        telemetry,
        paths,
        service.deadlines,
        Gate.of(settings),
    )
