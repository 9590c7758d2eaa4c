"""``Edge.answer_whole``: every request gets exactly one reply, whatever its route's work does:
a 200, a refusal with its status and headers, or the seed's 500 with a logged traceback."""

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop
from prometheus_client import CollectorRegistry

from feedback_monitor.body import Deadlines
from feedback_monitor.edge import Edge, FastRoute
from feedback_monitor.errors import ClientError
from feedback_monitor.protocol import Headers
from feedback_monitor.telemetry import Telemetry

TOKEN = b"a-secret-token-1234"
SCOPE = {
    "type": "http",
    "method": "POST",
    "path": "/fast",
    "headers": [(b"content-type", b"application/json"), (b"authorization", b"Bearer " + TOKEN)],
}
Replies = list[tuple[int, Any, dict[bytes, bytes]]]


async def unused_app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("the fast route went through the app")


def answered(
    submit: Callable[[bytes], Awaitable[Any]], body: bytes = b"{}", broken: bool = False
) -> Replies:
    """The replies ``answer_whole`` makes once the route's work is done (``broken``: sending
    them fails)."""
    replies: Replies = []
    route = FastRoute(submit, lambda outcome: json.dumps(outcome).encode(), max_body=100)
    registry = CollectorRegistry()
    telemetry = Telemetry(registry)
    edge = Edge(unused_app, {("POST", "/fast"): route}, telemetry, set(), Deadlines())

    def reply(status: int, answer: bytes, headers: Headers) -> None:
        if broken:
            raise RuntimeError("the connection broke")
        replies.append((status, json.loads(answer), dict(headers)))

    async def run() -> None:
        edge.answer_whole(SCOPE, body, reply)
        for _ in range(3):  # the work's callbacks run
            await asyncio.sleep(0)

    uvloop.run(run())  # the service's loop: its log of a failed callback names the arguments
    counted = [s for m in registry.collect() for s in m.samples
               if s.name == "feedback_http_requests_total"]  # fmt: skip
    assert [(s.labels["status"], s.value) for s in counted] == [
        (str(status), 1.0) for status, *_ in replies
    ], "every reply is counted once"
    return replies


def resolved(value: Any) -> Callable[[bytes], Awaitable[Any]]:
    def submit(body: bytes) -> "asyncio.Future[Any]":
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_result, value)
        return future

    return submit


def failing(error: BaseException) -> Callable[[bytes], Awaitable[Any]]:
    def submit(body: bytes) -> "asyncio.Future[Any]":
        future = asyncio.get_running_loop().create_future()
        if isinstance(error, asyncio.CancelledError):
            future.cancel()
        else:
            future.set_exception(error)
        return future

    return submit


def test_the_outcome_is_rendered_as_a_200() -> None:
    assert answered(resolved({"n": 1})) == [(200, {"n": 1}, {})]


def test_a_coroutine_s_outcome_too() -> None:
    async def submit(body: bytes) -> dict[str, int]:
        await asyncio.sleep(0)
        return {"n": 2}

    assert answered(submit) == [(200, {"n": 2}, {})]


def test_a_refusal_raised_at_once_keeps_its_status_and_headers() -> None:
    def submit(body: bytes) -> Awaitable[Any]:
        raise ClientError(429, "slow down", "rate_limited", headers={"Retry-After": "2"})

    assert answered(submit) == [(429, {"error": "slow down"}, {b"retry-after": b"2"})]


def test_a_refusal_of_the_work_too() -> None:
    error = ClientError(409, "Conflicting feedback for id", "conflict")
    assert answered(failing(error)) == [(409, {"error": "Conflicting feedback for id"}, {})]


def test_the_body_is_checked_first() -> None:
    [(status, answer, _)] = answered(resolved({}), body=b" " * 101)
    assert (status, answer) == (413, {"error": "Body larger than 100 bytes"})


@pytest.mark.parametrize(
    "error", [RuntimeError("a bug"), asyncio.CancelledError()], ids=["raised", "cancelled"]
)
def test_anything_else_is_a_500_with_its_traceback_logged(
    error: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    assert answered(failing(error)) == [(500, {"error": "Internal server error"}, {})]
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.getMessage() == "internal error on POST /fast"
    assert record.exc_info is not None


def test_a_render_that_fails_is_a_500_too(caplog: pytest.LogCaptureFixture) -> None:
    assert answered(resolved({"unserialisable": {1, 2}})) == [
        (500, {"error": "Internal server error"}, {})
    ]
    assert any(r.exc_info for r in caplog.records if r.levelno == logging.ERROR)


def test_no_log_names_the_request_s_headers(caplog: pytest.LogCaptureFixture) -> None:
    """Not even the event loop's, when sending the answer fails in a callback."""
    caplog.set_level(logging.DEBUG)
    answered(resolved({"n": 1}), broken=True)
    assert "the connection broke" in caplog.text
    assert TOKEN.decode() not in caplog.text
