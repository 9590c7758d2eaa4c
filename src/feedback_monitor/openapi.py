"""The OpenAPI 3.1 document, its schemas derived from the structs the API encodes."""

from typing import Any

import msgspec

from feedback_monitor import __version__
from feedback_monitor.auth import Scope
from feedback_monitor.gate import PUBLIC
from feedback_monitor.schemas import (
    JSON_NAME_PATTERN,
    JSON_VERSION_PATTERN,
    BatchAccepted,
    DriftAnswer,
    Error,
    FeedbackAccepted,
    FeedbackBatchRequest,
    FeedbackRequest,
    Models,
    PredictionAccepted,
    PredictionBatchAccepted,
    PredictionBatchRequest,
    PredictionRequest,
    SeriesAnswer,
    Status,
    WindowAnswer,
)

_REF = "#/components/schemas/{name}"


def _json(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(name=schema)}}},
    }


def _error(description: str) -> dict[str, Any]:
    return _json("Error", description)


def _with_headers(response: dict[str, Any], **headers: str) -> dict[str, Any]:
    described = {
        name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()
    }
    return {**response, "headers": described}


_UNAUTHORIZED = _with_headers(
    _error("Tokens are configured and the request has no valid bearer token."),
    **{"WWW-Authenticate": 'Bearer realm="feedback-monitor", with error="invalid_token" when '
       "a token was given"},
)  # fmt: skip
_FORBIDDEN = _error("The bearer token is valid but lacks the scope the operation needs.")
_RATE_LIMITED = _with_headers(
    _error("The client's rate limit (--rate-limit) is spent."),
    **{"Retry-After": "Whole seconds until the client's next request is allowed."},
)
_GATED = {"429": _RATE_LIMITED}
_GATED_READ = {"401": _UNAUTHORIZED, "403": _FORBIDDEN, **_GATED}
_GATED_WRITE = {
    **_GATED_READ,
    "408": _error("The body stopped arriving: no data for --body-timeout seconds."),
}
_SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "Required when --api-token or --token-file is set: for writes always "
        "(scope write), for reads under --protect-reads (scope read).",
    }
}


_COMMON = {
    "400": _error("Not a valid body: a message naming the field (and `index` in a batch)."),
    "413": _error("Body (or batch) larger than the configured limit."),
    "415": _error(
        "Content-Type is not application/json, or the body is compressed (Content-Encoding)."
    ),
    "422": _error("The series cap is reached: a new (model, version) is refused."),
    "431": _error("Request line and headers larger than 64 KiB (any route)."),
    "500": _error("Internal server error."),
    "503": _error("The store is unavailable or the service is shutting down."),
}
# Only a feedback can name an id that is not stored: one without its prediction labels it.
_FEEDBACK_LOOKUPS = {
    "404": _error("Unknown prediction id (a feedback without prediction names no stored one)."),
    "409": _error("Conflicting feedback or prediction for an id already stored."),
}
_PREDICTION_LOOKUPS = {
    "409": _error(
        "Conflicting prediction for an id already stored: another model, version, prediction "
        "or (given) score."
    ),
}


def _post(
    operation: str, summary: str, request: str, ok: str, ok_schema: str, lookups: dict[str, Any]
) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "description": "Acknowledged only after it is durably committed.",
            "operationId": operation,
            "requestBody": {"required": True, **_json(request, "See the schema.")},
            "responses": {ok: _json(ok_schema, "Committed."), **_COMMON, **lookups},
        }
    }


_WRITES = {
    "/feedback": _post(
        "postFeedback", "Record one outcome, or label a stored prediction by its id",
        "FeedbackRequest", "200", "FeedbackAccepted", _FEEDBACK_LOOKUPS,
    ),
    "/feedback/batch": _post(
        "postFeedbackBatch", "Record many outcomes, all or none, in one commit",
        "FeedbackBatchRequest", "200", "BatchAccepted", _FEEDBACK_LOOKUPS,
    ),
    "/predictions": _post(
        "postPrediction", "Store a prediction until its feedback arrives",
        "PredictionRequest", "201", "PredictionAccepted", _PREDICTION_LOOKUPS,
    ),
    "/predictions/batch": _post(
        "postPredictionBatch", "Store many predictions, all or none, in one commit",
        "PredictionBatchRequest", "201", "PredictionBatchAccepted", _PREDICTION_LOOKUPS,
    ),
}  # fmt: skip


def _parameter(name: str, where: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "description": description,
            "schema": schema}  # fmt: skip


_TIME = {
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "pattern": r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"},
    ],
    "description": "RFC 3339 with a zone, or Unix seconds",
}
_DURATION = {"type": "string", "pattern": "^[0-9]+[smhdw]$"}
_SERIES_PARAMETERS = [
    _parameter("model", "path", "The model's name.",
               {"type": "string", "pattern": JSON_NAME_PATTERN}),
    _parameter("version", "query", "The version (default: the empty version).",
               {"type": "string", "pattern": JSON_VERSION_PATTERN}),
    _parameter("time", "query", "Which clock places an outcome: when its label arrived, or "
               "when it was predicted.", {"enum": ["arrival", "prediction"], "default": "arrival"}),
    _parameter("start", "query", "Start of the window (default: end minus window); not with "
               "window.", _TIME),
    _parameter("end", "query", "End of the window (default: now).", _TIME),
]  # fmt: skip
_READ_ERRORS = {
    "400": _error("A query parameter cannot be used; the message names it."),
    "404": _error("Unknown model or version."),
    "503": _error("The store is unavailable."),
}


_WINDOW = _parameter(
    "window",
    "query",
    "Length of the window ending at end (default: now), such as 5m, 1h, 24h or 7d (default "
    "1h); or give start instead.",
    _DURATION,
)


def _read(operation: str, summary: str, extras: list[Any], ok: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "operationId": operation,
            "parameters": [*_SERIES_PARAMETERS, _WINDOW, *extras],
            "responses": {
                "200": _json(ok, "Read from the committed time buckets."),
                **_READ_ERRORS,
            },
        }
    }


_PATHS: dict[str, Any] = {
    **_WRITES,
    "/api/v1/models": {
        "get": {
            "summary": "Every (model, version) with its counts, metrics and predictions",
            "operationId": "getModels",
            "responses": {
                "200": _json("Models", "Committed state of every series."),
                "400": _error("A query parameter was given: this endpoint takes none."),
            },
        }
    },
    "/api/v1/models/{model}/metrics": _read(
        "getWindowMetrics",
        "A window's metrics with Wilson 95% intervals, baseline, value and score metrics",
        [],
        "WindowAnswer",
    ),
    "/api/v1/models/{model}/series": _read(
        "getMetricSeries",
        "Metrics per step over a window (default: the last hour), for charts",
        [
            _parameter(
                "step",
                "query",
                "Seconds or a duration; a multiple of the buckets kept at "
                "start (default: about 60 points).",
                {"type": "string"},
            )
        ],
        "SeriesAnswer",
    ),
    "/api/v1/models/{model}/drift": {
        "get": {
            "summary": "Drift detectors' statuses and their latest drifts, with the accuracy "
            "in the hour before and after each",
            "operationId": "getDrift",
            "parameters": [
                *_SERIES_PARAMETERS[:2],
                _parameter(
                    "limit",
                    "query",
                    "How many of the latest drifts (1 to 100, default 20).",
                    {"type": "integer", "minimum": 1, "maximum": 100},
                ),
            ],
            "responses": {"200": _json("DriftAnswer", "Read from the store."), **_READ_ERRORS},
        }
    },
    "/api/v1/config": {
        "get": {
            "summary": "The settings in force, secrets left out",
            "operationId": "getConfig",
            "responses": {
                "200": {
                    "description": "Each setting by name, as JSON values (prediction_ttl in "
                    "ISO 8601, retention with units, other durations in seconds); secrets are "
                    "left out.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus exposition (OpenMetrics when the Accept header asks for it)",
            "operationId": "getMetrics",
            "responses": {
                "200": {
                    "description": "Counters and gauges of committed feedback, service metrics.",
                    "content": {
                        "text/plain": {"schema": {"type": "string"}},
                        "application/openmetrics-text": {"schema": {"type": "string"}},
                    },
                }
            },
        }
    },
    "/health": {
        "get": {
            "summary": "Liveness: 200 while the process runs",
            "operationId": "getHealth",
            "responses": {"200": _json("Status", "The process is running.")},
        }
    },
    "/ready": {
        "get": {
            "summary": "Readiness: 200 when the store answers, 503 otherwise",
            "operationId": "getReady",
            "responses": {
                "200": _json("Status", "The store answers."),
                "503": _error("The store does not answer."),
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "operationId": "getOpenAPI",
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    },
}


_ANY_ERROR = _error("Any other error, such as 404 or 405: the same JSON shape.")


def _with_default_error(paths: dict[str, Any]) -> dict[str, Any]:
    return {
        path: {
            method: {**op, "responses": {**op["responses"], "default": _ANY_ERROR}}
            for method, op in operations.items()
        }
        for path, operations in paths.items()
    }


def _gated(paths: dict[str, Any]) -> dict[str, Any]:
    """Every operation but the public ones with its security and the gate's answers."""
    return {
        path: {method: _gate(path, method, op) for method, op in operations.items()}
        for path, operations in paths.items()
    }


def _gate(path: str, method: str, operation: dict[str, Any]) -> dict[str, Any]:
    if path in PUBLIC:
        return operation
    scope, answers = (
        (Scope.READ, _GATED_READ) if method in ("get", "head") else (Scope.WRITE, _GATED_WRITE)
    )
    responses = {**operation["responses"], **answers}
    # An empty requirement first: no token is needed until tokens are configured.
    return {**operation, "security": [{}, {"bearer": [scope.value]}], "responses": responses}


def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    _, components = msgspec.json.schema_components(
        (
            FeedbackRequest,
            FeedbackBatchRequest,
            PredictionRequest,
            PredictionBatchRequest,
            FeedbackAccepted,
            BatchAccepted,
            PredictionAccepted,
            PredictionBatchAccepted,
            Models,
            WindowAnswer,
            SeriesAnswer,
            DriftAnswer,
            Error,
            Status,
        ),
        ref_template=_REF,
    )
    # What no field's own schema says: a feedback has its prediction, or the id of a stored one.
    components["FeedbackRequest"]["anyOf"] = [
        {"required": ["prediction"], "properties": {"prediction": {"enum": [0, 1]}}},
        {"required": ["id"], "properties": {"id": {"type": "string"}}},
    ]
    return {
        "openapi": "3.1.0",
        "info": {"title": "Feedback Monitor", "version": __version__},
        "paths": _with_default_error(_gated(_PATHS)),
        "components": {"schemas": components, "securitySchemes": _SECURITY_SCHEMES},
    }
