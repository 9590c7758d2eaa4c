"""Limits no client can pass: the rate limit per client, and the deadline on a request body."""

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Message

from feedback_monitor.body import Deadlines, read_json_body
from feedback_monitor.errors import ClientError
from feedback_monitor.gate import Gate, _client
from feedback_monitor.limits import RateLimiter
from feedback_monitor.settings import Settings
from feedback_monitor.store.sqlite import SQLiteStore
from tests.asgi import JSON, assert_documented, exchange, get, post
from tests.stores import ThreadedStore


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_client_gets_its_burst_then_its_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(2.0, burst=3.0, clock=clock)
    assert [limiter.wait("a") for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]
    clock.now += 0.25
    assert limiter.wait("a") == pytest.approx(0.25)  # refused requests are not counted
    clock.now += 0.25
    assert limiter.wait("a") == 0.0
    assert limiter.wait("b") == 0.0  # each client its own bucket


def test_the_burst_is_one_seconds_worth_and_at_least_one() -> None:
    assert RateLimiter(5.0).burst == 5.0
    assert RateLimiter(0.1).burst == 1.0
    clock = Clock()
    slow = RateLimiter(0.1, clock=clock)
    assert slow.wait("a") == 0.0
    assert slow.wait("a") == pytest.approx(10.0)


def test_past_the_cap_a_refilled_client_is_forgotten_for_a_new_one() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, clock=clock, max_clients=3)
    for client in "abc":
        limiter.wait(client)
    clock.now += 0.5
    assert limiter.wait("a") == 0.5  # seen again: now the most recent
    assert limiter.wait("d") == pytest.approx(0.5)  # b, the least recent, refills in 0.5 s
    clock.now += 0.5
    assert limiter.wait("d") == 0.0  # b has refilled: forgotten, changing no answer
    assert list(limiter.buckets) == ["c", "a", "d"]
    assert limiter.wait("a") == 0.0  # the busy ones remembered: a refilled meanwhile


def test_rotating_more_addresses_than_the_cap_gains_nothing() -> None:
    """A client forgotten while its bucket fills would get a new burst on its return."""
    clock = Clock()
    limiter = RateLimiter(1.0, clock=clock, max_clients=100)
    passed = 0
    for _ in range(5):
        passed += sum(limiter.wait(key) == 0.0 for key in range(101))
        clock.now += 0.01
    assert passed == 100  # each client its burst of one, the one past the cap none
    assert len(limiter.buckets) == 100


def test_a_flood_of_new_clients_is_bounded() -> None:
    """At a rate so low that no bucket refills meanwhile, 60,000 addresses once each."""
    limiter = RateLimiter(0.001, clock=Clock(), max_clients=1000)
    answers = [limiter.wait(n) for n in range(60_000)]
    assert answers[:1000] == [0.0] * 1000
    assert all(wait > 0.0 for wait in answers[1000:])  # waiting for the first to refill
    assert len(limiter.buckets) == 1000


def answers(tmp_path: Path, *requests: httpx.Request, **settings: Any) -> list[httpx.Response]:
    store = ThreadedStore(SQLiteStore(tmp_path / "store"))
    return exchange(store, tmp_path, *requests, **settings)


FEEDBACK = {"prediction": 1, "actual": 0}


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    requests = [post(FEEDBACK), post(FEEDBACK), get("/api/v1/models"), get("/health")]
    responses = answers(tmp_path, *requests, rate_limit=1)
    assert [r.status_code for r in responses] == [200, 429, 429, 200]
    limited = responses[1]
    assert limited.headers["retry-after"] == "1"
    assert limited.json() == {"error": "Rate limit exceeded: 1 requests a second per client"}
    assert_documented(requests[1], limited)
    assert_documented(requests[2], responses[2])


def test_rate_limit_is_per_token_when_authenticated(tmp_path: Path) -> None:
    def signed(token: str) -> httpx.Request:
        return post(FEEDBACK, {**JSON, "authorization": f"Bearer {token}"})

    path = tmp_path / "tokens"
    path.write_text("token-one write\ntoken-two write\n")
    requests = [signed("token-one"), signed("token-two"), signed("token-one"), get("/metrics")]
    responses = answers(tmp_path, *requests, rate_limit=1, token_file=path)
    # the same address: the two tokens have a bucket each, the unauthenticated read its own
    assert [r.status_code for r in responses] == [200, 200, 429, 200]


def test_addresses_that_fill_the_table_do_not_hold_up_a_token(tmp_path: Path) -> None:
    """The buckets of addresses are bounded, and a new address waits while they are all
    filling; a valid token has a bucket of its own all the same."""
    path = tmp_path / "tokens"
    path.write_text("token-one write\n")
    gate = Gate.of(Settings(rate_limit=1.0, token_file=path))
    assert gate is not None
    assert gate.limiter is not None
    for n in range(gate.limiter.max_clients):  # a request each: every bucket still filling
        gate({**SCOPE, "method": "GET", "path": "/metrics", "client": (f"10.{n}", 1)})
    with pytest.raises(ClientError) as waits:
        gate({**SCOPE, "method": "GET", "path": "/metrics", "client": ("192.0.2.1", 1)})
    assert waits.value.status == 429
    signed = [(b"authorization", b"Bearer token-one")]
    gate({"type": "http", "headers": signed, "method": "POST", "path": "/feedback",
          "client": ("192.0.2.1", 1)})  # fmt: skip


def test_no_rate_limit_by_default(tmp_path: Path) -> None:
    responses = answers(tmp_path, *(post(FEEDBACK) for _ in range(20)))
    assert {r.status_code for r in responses} == {200}


SCOPE = {"type": "http", "headers": [(b"content-type", b"application/json")]}


async def read(receive: Any, timeout: float) -> bytes:
    return await read_json_body(SCOPE, receive, 1000, Deadlines(timeout))


def test_a_cancelled_read_is_still_cancelled() -> None:
    async def main() -> None:
        reading = asyncio.create_task(read(receiving(), timeout=10.0))
        await asyncio.sleep(0)
        reading.cancel()
        await reading

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())


def receiving(*messages: Message) -> Any:
    """A receive that gives ``messages`` and then waits forever, as a client gone quiet."""
    queue = list(messages)

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive


def test_a_body_that_stops_arriving_is_refused_408() -> None:
    receive = receiving({"type": "http.request", "body": b'{"pre', "more_body": True})
    with pytest.raises(ClientError) as caught:
        asyncio.run(read(receive, timeout=0.05))
    assert (caught.value.status, caught.value.reason) == (408, "body_timeout")
    assert caught.value.headers == {"Connection": "close"}


def test_the_body_deadline_is_between_chunks_not_for_the_whole_body() -> None:
    async def slow() -> Message:
        await asyncio.sleep(0.3)
        return {"type": "http.request", "body": b" ", "more_body": True}

    chunks = iter([slow] * 8)

    async def receive() -> Message:
        step = next(chunks, None)
        return await step() if step else {"type": "http.request", "body": b"{}"}

    body = asyncio.run(read(receive, timeout=1.0))  # each chunk in time, the body not
    assert body == b" " * 8 + b"{}"


def test_a_body_within_its_deadline_is_read_whole() -> None:
    receive = receiving(
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.request", "body": b"}"},
    )
    assert asyncio.run(read(receive, timeout=1.0)) == b"{}"


def test_a_disconnect_is_still_a_disconnect() -> None:
    receive = receiving({"type": "http.disconnect"})
    with pytest.raises(ClientError, match="disconnected"):
        asyncio.run(read(receive, timeout=1.0))


@pytest.mark.parametrize(
    ("first", "second", "shared"),
    [
        ("2001:db8::1", "2001:db8::ffff:2", True),  # one /64: one host may pick any of it
        ("2001:db8::1", "2001:db8:0:1::1", False),
        ("192.0.2.1", "192.0.2.2", False),
        ("::ffff:192.0.2.1", "::ffff:192.0.2.2", False),  # IPv4 addresses, as IPv6 sockets see them
    ],
)
def test_the_rate_limit_takes_an_ipv6_64_as_one_client(
    first: str, second: str, shared: bool
) -> None:
    limiter = RateLimiter(1.0, clock=Clock())
    assert limiter.wait(_client({"client": (first, 1)})) == 0.0
    assert (limiter.wait(_client({"client": (second, 2)})) > 0.0) is shared
