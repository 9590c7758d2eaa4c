"""The OpenAPI 3.1 document, its schemas derived from the structs the API encodes."""

from typing import Any

import msgspec

from feedback_monitor import __version__
from feedback_monitor.schemas import Error, FeedbackAccepted, FeedbackRequest, Status

_REF = "#/components/schemas/{name}"


def _json(schema: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(name=schema)}}},
    }


def _error(description: str) -> dict[str, Any]:
    return _json("Error", description)


_FEEDBACK = {
    "post": {
        "summary": "Record one labelled outcome",
        "description": "Acknowledged only after the feedback is durably committed.",
        "operationId": "postFeedback",
        "requestBody": {"required": True, **_json("FeedbackRequest", "One outcome.")},
        "responses": {
            "200": _json("FeedbackAccepted", "Committed; metrics include this feedback."),
            "400": _error("Missing required fields, values not 0 or 1, or not a JSON object."),
            "413": _error("Body larger than the configured limit."),
            "415": _error("Content-Type is not application/json."),
            "500": _error("Internal server error."),
            "503": _error("The store is unavailable or the service is shutting down."),
        },
    }
}

_PATHS: dict[str, Any] = {
    "/feedback": _FEEDBACK,
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


def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    _, components = msgspec.json.schema_components(
        (FeedbackRequest, FeedbackAccepted, Error, Status), ref_template=_REF
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": "Feedback Monitor", "version": __version__},
        "paths": _with_default_error(_PATHS),
        "components": {"schemas": components},
    }
