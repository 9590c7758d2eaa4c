"""Schemathesis against a real service's own ``/openapi.json``: every operation but ``/metrics``
(a text exposition, checked by promtool elsewhere) fuzzed with valid and invalid requests; no
answer may be a server error or stray from the document (status, content type, headers, schema).

Bounded: a few dozen examples an operation keep the run within a minute. Each operation's
strategy drives a plain hypothesis test (schemathesis' pytest plugin needs pytest < 9).
"""

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from feedback_monitor.openapi import document
from feedback_monitor.testing import ServiceProcess
from tests.integration.helpers import serving

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 100
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
OPERATIONS = [
    pytest.param(method.upper(), path, mode, id=f"{method.upper()} {path} {mode.value}")
    for path, item in document()["paths"].items()
    if path != "/metrics"
    for method, operation in item.items()
    for mode in GenerationMode
    # without parameters nor body, nothing can be sent that the document forbids
    if mode is GenerationMode.POSITIVE or {"parameters", "requestBody"} & operation.keys()
]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("fuzz")
    with serving(root / "data", "--max-series", "50", log_path=root / "service.log") as started:
        yield started


@pytest.fixture(scope="module")
def api_schema(service: ServiceProcess) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(service.url + "/openapi.json")


@pytest.mark.parametrize(("method", "path", "mode"), OPERATIONS)
def test_every_answer_is_documented_and_none_is_a_server_error(
    api_schema: schemathesis.BaseSchema,
    service: ServiceProcess,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,  # the same examples on every run: CI fails for the code, not luck
        database=None,
    )
    def fuzz(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(base_url=service.url, checks=CHECKS, timeout=30)

    fuzz()
