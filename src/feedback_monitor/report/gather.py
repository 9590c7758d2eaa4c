"""The report's data, read from a running service's JSON API (the service holds its store)."""

import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, TypeVar

import httpx
import msgspec

from feedback_monitor.auth import TOKEN_VARIABLE, bearer_headers
from feedback_monitor.report import steps
from feedback_monitor.report.document import Drift, Report
from feedback_monitor.report.errors import BadFlag, ReportError
from feedback_monitor.schemas import (
    DriftAnswer,
    Models,
    PredictionStats,
    SeriesAnswer,
    WindowAnswer,
)

TIMEOUT = 30.0
BUSY_FOR = 60.0  # the longest the report waits out 429s and 503s, in seconds
EVENT_LIMIT = 100  # the most the drift API gives
T = TypeVar("T")


class Api:
    """GETs on the service's JSON API, each answer decoded to its schema or a ReportError."""

    def __init__(self, http: httpx.Client, busy_for: float = BUSY_FOR) -> None:
        self.http = http
        self._busy_for = busy_for

    def get(self, path: str, shape: type[T], params: Mapping[str, str | float] | None = None) -> T:
        response = self._answer(path, params or {})
        self._check(response, path, params or {})
        try:
            return msgspec.json.decode(response.content, type=shape)
        except msgspec.DecodeError as error:  # a validation error too
            raise ReportError(f"unexpected answer from {path}: {error}") from None

    def _answer(self, path: str, params: Mapping[str, str | float]) -> httpx.Response:
        """The answer to a GET, after the waits a busy service asks for (a rate limit's 429,
        a 503), for up to ``busy_for`` seconds in all."""
        deadline = time.monotonic() + self._busy_for
        while True:
            try:
                response = self.http.get(path, params=dict(params))
            except httpx.TransportError as error:
                raise ReportError(
                    f"cannot reach the service at {self.http.base_url}: {error}"
                ) from None
            wait = _retry_after(response)
            if wait is None or time.monotonic() + wait > deadline:
                return response
            time.sleep(wait)

    def _check(
        self, response: httpx.Response, path: str, params: Mapping[str, str | float]
    ) -> None:
        status = response.status_code
        if status == 404 and path.startswith("/api/v1/models/"):
            raise ReportError(
                f"unknown model or version at {self.http.base_url}: {_series(params, path)}"
            )
        if status in (401, 403):
            raise ReportError(
                f"the service refused to read {path} ({status}): "
                f"set {TOKEN_VARIABLE} to a token with the read scope"
            )
        if status == 400:  # a model, version or period it cannot take: one of our flags
            raise BadFlag(f"the service refused a flag: {_error(response)}")
        if status != 200:
            raise ReportError(f"the service answered {status} to {path}: {_error(response)}")


def _retry_after(response: httpx.Response) -> float | None:
    """The seconds a 429 or 503 asks to wait (Retry-After, at least 1: a proxy's 0 would have
    the report ask again at once); None for any other answer."""
    if response.status_code not in (429, 503):
        return None
    value = response.headers.get("retry-after", "")
    return max(1.0, float(value)) if value.isascii() and value.isdigit() else 1.0


def client(url: str, token: str | None = None) -> httpx.Client:
    """A client of the service at ``url``, with a bearer token when reads need one."""
    try:
        headers = bearer_headers(token or None)
    except ValueError as error:
        raise BadFlag(f"{TOKEN_VARIABLE}: {error}") from None
    try:
        return httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=TIMEOUT)
    except httpx.InvalidURL as error:
        raise BadFlag(f"--url: {error}") from None


def gather(
    http: httpx.Client, model: str, version: str, view: str, start: float, end: float
) -> Report:
    """Every answer the report needs, for ``model``/``version`` over ``[start, end)``."""
    api = Api(http)
    series = f"/api/v1/models/{urllib.parse.quote(model, safe='')}"  # never . or ..: refused
    query: dict[str, str | float] = {"version": version, "start": start, "end": end, "time": view}
    summary = api.get(f"{series}/metrics", WindowAnswer, query)
    step = steps.step(start, end)
    days = api.get(f"{series}/series", SeriesAnswer, {**query, "step": step})
    drift = api.get(f"{series}/drift", DriftAnswer, {"version": version, "limit": EVENT_LIMIT})
    models = api.get("/api/v1/models", Models)
    config = api.get("/api/v1/config", dict[str, Any])
    return Report(
        time.time(),
        str(http.base_url.copy_with(userinfo=b"")).rstrip("/"),  # no password in a report
        model,
        version,
        view,
        summary,
        days.points,
        _predictions(models, model, version),
        _drift_within(drift, summary.start, summary.end),
        config,
        step,
    )


def _predictions(models: Models, model: str, version: str) -> PredictionStats:
    for summary in models.models:
        if (summary.model, summary.version) == (model, version):
            return summary.predictions
    raise ReportError(f"unknown model or version: {model!r} version {version!r}")


def _drift_within(answer: DriftAnswer, start: float, end: float) -> Drift:
    events = [event for event in answer.events if start <= event.time < end]
    reaches_back = len(answer.events) < EVENT_LIMIT or answer.events[-1].time < start
    return Drift(answer.detectors, events, reaches_back)


def _series(params: Mapping[str, str | float], path: str) -> str:
    model = urllib.parse.unquote(path.removeprefix("/api/v1/models/").split("/")[0])
    return f"{model!r} version {params.get('version', '')!r}"


def _error(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200].strip() or response.reason_phrase
