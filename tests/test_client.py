"""The client's retry and batching rules, against a scripted transport (no server), and against
a tiny HTTP server on loopback for what a proxy in front of the service answers."""

import asyncio
import contextlib
import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest

from feedback_monitor import InvalidRecord
from feedback_monitor.client import (
    AsyncFeedbackClient,
    Failure,
    Feedback,
    FeedbackClient,
    Prediction,
    QueueFull,
    Refused,
    Retry,
    UnexpectedAnswer,
    Unreachable,
)
from tests.integration.helpers import wait_until

FAST = Retry(attempts=3, base=0.001, cap=0.002)
WAIT = 10.0  # seconds; a deadline for conditions, never a pause
Handler = Callable[[httpx.Request], httpx.Response]


class Script:
    """A transport that answers from ``answers`` in turn, then with ``then``; keeps the bodies."""

    def __init__(self, *answers: httpx.Response | Exception, then: Handler | None = None) -> None:
        self.answers = list(answers)
        self.then = then or accept
        self.bodies: list[dict[str, object]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        if not self.answers:
            return self.then(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def client(self, **options: object) -> FeedbackClient:
        return FeedbackClient(transport=httpx.MockTransport(self), retry=FAST, **options)  # type: ignore[arg-type]

    def batches(self) -> list[list[str]]:
        return [[item["id"] for item in body["items"]] for body in self.bodies]  # type: ignore[attr-defined]


def accept(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    if "items" in body:
        return httpx.Response(
            200, json={"success": True, "accepted": len(body["items"]), "duplicates": 0}
        )
    metrics = dict.fromkeys(("accuracy", "precision", "recall", "f1_score"), 1.0)
    return httpx.Response(200, json={"success": True, "metrics": metrics})


def refuse(status: int, index: int | None = None) -> httpx.Response:
    error: dict[str, object] = {"error": "no"}
    return httpx.Response(status, json=error if index is None else {**error, "index": index})


def test_unavailable_and_lost_answers_are_retried_with_the_same_id() -> None:
    script = Script(refuse(503), httpx.ReadTimeout("slow"), httpx.Response(502, text="gateway"))
    with script.client() as monitor, pytest.raises(Unreachable, match="502 gateway"):
        monitor.send_feedback(prediction=1, actual=1)
    assert len(script.bodies) == 3
    assert len({body["id"] for body in script.bodies}) == 1
    again = Script(refuse(503), httpx.ConnectError("refused"))
    with again.client() as monitor:
        assert monitor.send_feedback(prediction=1, actual=0, id="mine").id == "mine"
    assert [body["id"] for body in again.bodies] == ["mine"] * 3


def test_a_client_error_is_raised_at_once() -> None:
    script = Script(refuse(409))
    with script.client() as monitor, pytest.raises(Refused) as refused:
        monitor.send_feedback(prediction=1, actual=1)
    assert (refused.value.status, refused.value.message, len(script.bodies)) == (409, "no", 1)


def test_bad_values_never_leave_the_client() -> None:
    script = Script()
    with script.client() as monitor:
        with pytest.raises(ValueError, match="Missing required fields"):
            monitor.enqueue(Feedback(None, 1))
        with pytest.raises(ValueError, match="Invalid model"):
            monitor.send_feedback(prediction=1, actual=1, model="a b")
        with pytest.raises(InvalidRecord, match="Values must be 0 or 1") as batch:
            monitor.send_feedback_batch([Feedback(1, 1), Feedback(1, 7)])
        assert batch.value.index == 1
    assert script.bodies == []


def test_a_refused_item_is_reported_and_the_rest_sent_again() -> None:
    reported: list[Failure] = []
    script = Script(refuse(409, index=1))
    with script.client(batch_size=3, on_error=reported.append) as monitor:
        ids = [monitor.enqueue(Feedback(1, n % 2, id=f"f-{n}")) for n in range(3)]
    assert script.batches() == [ids, [ids[0], ids[2]]]
    assert [(f.record.id, f.status, f.message) for f in reported] == [("f-1", 409, "no")]
    assert (monitor.stats.accepted, monitor.stats.failed) == (2, 1)


def test_a_batch_too_large_is_halved() -> None:
    script = Script(refuse(413), refuse(413))
    with script.client(batch_size=4) as monitor:
        ids = [monitor.enqueue(Feedback(1, 1)) for _ in range(4)]
    assert script.batches() == [ids, ids[:2], ids[:1], ids[1:2], ids[2:]]
    assert (monitor.stats.accepted, monitor.failures) == (4, [])


def test_what_is_unsent_at_the_close_timeout_is_reported() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    calls: list[Failure] = []

    def failing_callback(failure: Failure) -> None:
        calls.append(failure)
        raise RuntimeError("a bug in the caller's callback")

    monitor = Script(then=down).client(on_error=failing_callback)
    records = [Feedback(0, 0, id=f"u-{n}") for n in range(5)]
    for record in records:
        monitor.enqueue(record)
    monitor.close(timeout=0.05)
    assert [f.record for f in monitor.failures] == records == [f.record for f in calls]
    assert {f.status for f in monitor.failures} == {None}
    assert monitor.stats.retries > 0
    with pytest.raises(RuntimeError, match="closed"):
        monitor.enqueue(records[0])


def test_every_record_enqueued_while_the_client_closes_is_sent_or_refused() -> None:
    """Threads enqueue while another closes: an id returned is an id sent (or reported);
    a record refused raises, and nothing is left in the queue."""
    script = Script()
    monitor = script.client(batch_size=7, flush_interval=0.001)
    returned: list[str] = []
    refused = threading.Event()
    stop = threading.Event()

    def enqueue() -> None:
        while not stop.is_set():
            try:
                returned.append(monitor.enqueue(Feedback(1, 1)))
            except RuntimeError:
                refused.set()
                return

    threads = [threading.Thread(target=enqueue) for _ in range(6)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10.0
    while len(returned) < 500 and time.monotonic() < deadline:  # well under way
        threading.Event().wait(0.001)
    monitor.close()
    assert refused.wait(10.0)
    stop.set()
    for thread in threads:
        thread.join()
    sent = {item for batch in script.batches() for item in batch}
    assert set(returned) <= sent | {str(f.record.id) for f in monitor.failures}
    assert monitor.failures == []


def test_numpy_numbers_are_sent_as_plain_json_numbers() -> None:
    """What a model gives: predict's numpy.int64 and predict_proba's numpy.float64 (or float32)."""
    script = Script()
    monitor = script.client()
    prediction, score = np.int64(1), np.float32(0.75)
    monitor.send_feedback(prediction=prediction, actual=np.int64(0), score=np.float64(0.25))  # type: ignore[arg-type]
    monitor.log_prediction(id="p", prediction=prediction, score=score, timestamp=np.float64(1e9))  # type: ignore[arg-type]
    monitor.enqueue(Feedback(prediction, np.int64(1), score=score))  # type: ignore[arg-type]
    monitor.close()
    first, second, third = script.bodies
    series = {"model": "default", "version": ""}
    assert first == {"prediction": 1, "actual": 0, "score": 0.25, "id": first["id"], **series}
    assert second == {"id": "p", "prediction": 1, "score": 0.75, "timestamp": 1e9, **series}
    assert third["items"][0]["score"] == 0.75  # type: ignore[index]
    assert monitor.failures == []


def test_a_numpy_nan_never_leaves_the_client() -> None:
    monitor = Script().client()
    with pytest.raises(InvalidRecord, match="Invalid score: not a finite number"):
        monitor.send_feedback(prediction=1, actual=1, score=np.float32("nan"))  # type: ignore[arg-type]
    monitor.close()


@pytest.mark.parametrize("field", ["score", "timestamp"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_number_json_cannot_carry_never_leaves_the_client(field: str, value: float) -> None:
    """msgspec would send it as null: the score or time would be dropped without a word."""
    script = Script()
    monitor = script.client()
    with pytest.raises(InvalidRecord, match=f"Invalid {field}: not a finite number"):
        monitor.send_feedback(prediction=1, actual=1, **{field: value})  # type: ignore[arg-type]
    with pytest.raises(InvalidRecord, match=f"Invalid {field}"):
        monitor.enqueue(Feedback(1, 1, **{field: value}))  # type: ignore[arg-type]
    monitor.close()
    assert script.bodies == []


MAY_1 = 1714521600.0  # 2024-05-01T00:00:00Z
PARIS = ZoneInfo("Europe/Paris")


def test_numpy_and_pandas_values_are_sent_as_python_values() -> None:
    """What a DataFrame's row gives: numpy scalars, numpy strings, pandas' Timestamps; the same
    in immediate calls and in records."""
    script = Script()
    monitor = script.client()
    utc, paris = pd.Timestamp("2024-05-01", tz="UTC"), datetime(2024, 5, 1, 2, tzinfo=PARIS)
    row: dict[str, Any] = {"model": np.str_("m"), "version": np.str_("v1"), "score": np.array(0.5)}
    one: Any = np.array(1)  # a 0-d array, as indexing with () gives
    monitor.send_feedback(prediction=one, actual=np.int8(0), id=np.str_("a"), **row)  # type: ignore[arg-type]
    monitor.log_prediction(id=np.str_("b"), prediction=np.uint64(1), timestamp=utc)  # type: ignore[arg-type]
    monitor.send_feedback_batch([Feedback(one, np.int64(1), id="c", timestamp=utc)])  # type: ignore[arg-type]
    monitor.enqueue(Prediction("d", np.array(0), timestamp=paris))  # type: ignore[arg-type]
    monitor.close()
    first, second, third, fourth = script.bodies
    assert first == {
        "prediction": 1,
        "actual": 0,
        "id": "a",
        "model": "m",
        "version": "v1",
        "score": 0.5,
    }
    assert second == {
        "id": "b",
        "prediction": 1,
        "model": "default",
        "version": "",
        "timestamp": MAY_1,
    }
    assert third["items"] == [{**second, "id": "c", "actual": 1}]
    assert fourth["items"] == [{**second, "id": "d", "prediction": 0}]
    assert monitor.failures == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("prediction", np.bool_(True), "Values must be 0 or 1"),  # as for Python's True
        ("prediction", True, "Values must be 0 or 1"),
        ("score", pd.NA, "Invalid score: cannot send a pandas"),
        ("score", np.array([0.5]), "Invalid score: cannot send a numpy.ndarray"),
        ("timestamp", np.datetime64("2024-05-01T00:00"), "Invalid timestamp: a numpy datetime64"),
        ("timestamp", pd.NaT, "Invalid timestamp: not a time"),
        ("timestamp", pd.Timestamp("2024-05-01"), "Invalid timestamp: a datetime needs its time"),
        ("model", pd.NA, "Invalid model: cannot send a pandas"),
    ],
)
def test_a_value_json_cannot_carry_is_refused_naming_its_field(
    field: str, value: Any, message: str
) -> None:
    script = Script()
    monitor = script.client()
    record = Feedback(1, 1)._replace(**{field: value})
    with pytest.raises(InvalidRecord, match=f"^{message}"):
        monitor.send_feedback(**{**record._asdict(), "id": None})
    with pytest.raises(InvalidRecord, match=f"^{message}"):
        monitor.enqueue(record)
    with pytest.raises(InvalidRecord, match=f"^{message}") as batch:
        monitor.send_feedback_batch([Feedback(0, 0), record])
    assert batch.value.index == 1
    monitor.close()
    assert script.bodies == []


@pytest.mark.parametrize("token", ["t\u00f8ken", "token\n", "two words"])
def test_a_token_no_header_can_carry_is_refused_at_once(token: str) -> None:
    """Not a transport error at every attempt, retried as if the server were down."""
    with pytest.raises(ValueError, match="a token is letters"):
        Script().client(token=token)


@pytest.mark.parametrize(
    "options", [{"attempts": 0}, {"base": 0.0}, {"base": 2.0, "cap": 1.0}, {"cap": -1.0}]
)
def test_a_retry_that_cannot_work_is_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="a Retry needs"):
        Retry(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize("make", [FeedbackClient, AsyncFeedbackClient])
def test_a_misspelt_option_is_refused(make: type[FeedbackClient | AsyncFeedbackClient]) -> None:
    """A misspelt token= would otherwise send no token at all, silently."""
    with pytest.raises(TypeError, match=r"unknown option.* tokn"):
        make("http://127.0.0.1:1", tokn="secret")  # type: ignore[call-arg]


def test_a_queue_of_no_room_is_refused() -> None:
    with pytest.raises(ValueError, match="max_queue"):
        Script().client(max_queue=0)


def test_a_full_queue_waits_then_refuses() -> None:
    sending, release = threading.Event(), threading.Event()

    def stuck(request: httpx.Request) -> httpx.Response:
        sending.set()
        release.wait(10.0)
        return accept(request)

    monitor = Script(then=stuck).client(batch_size=1, max_queue=1, enqueue_timeout=0.05)
    monitor.enqueue(Feedback(1, 1))  # taken by the worker, which then waits on the server
    assert sending.wait(10.0)
    monitor.enqueue(Feedback(1, 1))  # fills the queue
    with pytest.raises(QueueFull):
        monitor.enqueue(Feedback(1, 1))
    release.set()
    monitor.close()
    assert (monitor.stats.accepted, monitor.failures) == (2, [])


def test_retry_waits_grow_within_their_bounds() -> None:
    retry = Retry(base=1.0, cap=4.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (9, 4.0)]:
        assert ceiling / 2 <= retry.delay(attempt) <= ceiling


def test_ids_it_generates_are_uuid7s_that_grow_with_time() -> None:
    """Time-ordered ids land at the end of the server's index of ids, not anywhere in it."""
    script = Script()
    with script.client(batch_size=1000) as client:
        before = time.time()
        early = [client.enqueue(Feedback(1, 1)) for _ in range(100)]
        time.sleep(0.002)  # the next millisecond: ids of different times must sort by time
        late = [client.enqueue(Feedback(1, 1)) for _ in range(100)]
        after = time.time()
    parsed = [uuid.UUID(hex=i) for i in early + late]
    assert {(u.version, u.variant) for u in parsed} == {(7, uuid.RFC_4122)}
    assert len(set(early + late)) == 200
    assert max(early) < min(late)
    stamps = [u.int >> 80 for u in parsed]  # the milliseconds since 1970
    assert int(before * 1000) <= min(stamps) <= max(stamps) <= int(after * 1000)
    assert sorted(i for batch in script.batches() for i in batch) == sorted(early + late)


def test_close_ends_while_enqueue_waits_for_room_and_the_server_is_down() -> None:
    """close() lets the worker give up on what it holds, so a producer blocked on a full queue
    gets its record in, reported as a failure, and close() returns in its time."""
    script = Script(then=lambda request: (_ for _ in ()).throw(httpx.ConnectError("down")))
    client = script.client(max_queue=2, batch_size=2, flush_interval=0.0)
    produced: list[str] = []
    refusals: list[str] = []

    def produce() -> None:
        try:
            for _ in range(20):
                produced.append(client.enqueue(Feedback(1, 1)))
        except RuntimeError as closed:  # what enqueue says once close() has begun
            refusals.append(str(closed))

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    wait_until(lambda: len(produced) >= 3)  # the worker retries; the producer waits for room
    closer = threading.Thread(target=client.close, kwargs={"timeout": 0.2}, daemon=True)
    closer.start()
    closer.join(timeout=10)
    assert not closer.is_alive()
    producer.join(timeout=10)
    assert {f.record.id for f in client.failures} == set(produced)
    assert refusals == ["the client is closed"]  # the rest: closed under the producer


def test_enqueue_timeouts_of_waiting_threads_run_side_by_side() -> None:
    script = Script(then=lambda request: (_ for _ in ()).throw(httpx.ConnectError("down")))
    client = FeedbackClient(
        transport=httpx.MockTransport(script), retry=Retry(base=10, cap=10),
        max_queue=1, batch_size=1, enqueue_timeout=0.3,
    )  # fmt: skip
    client.enqueue(Feedback(1, 1))  # the worker holds it, retrying
    wait_until(lambda: len(script.bodies) >= 1)
    client.enqueue(Feedback(1, 1))  # the queue is full now
    refused: list[float] = []

    def enqueue() -> None:
        start = time.monotonic()
        with pytest.raises(QueueFull):
            client.enqueue(Feedback(1, 1))
        refused.append(time.monotonic() - start)

    threads = [threading.Thread(target=enqueue) for _ in range(4)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(refused) == 4
    assert time.monotonic() - start < 4 * 0.3  # one after the other would take 1.2 s
    client.close(timeout=0)


def test_close_cuts_a_wait_between_attempts_short() -> None:
    """A 429 asking for a minute does not hold close() past its timeout."""
    busy = httpx.Response(429, headers={"Retry-After": "60"}, json={"error": "busy"})
    script = Script(then=lambda request: busy)
    client = script.client(flush_interval=0.0)
    client.enqueue(Feedback(1, 1))
    wait_until(lambda: len(script.bodies) >= 1)  # the worker waits out the Retry-After now
    start = time.monotonic()
    client.close(timeout=0.3)
    assert time.monotonic() - start < 5
    assert [f.status for f in client.failures] == [None]


@pytest.mark.parametrize(
    "url", ["127.0.0.1:5000", "ftp://example.org", "localhost:5000", "http:/127.0.0.1", "http://"]
)
def test_a_url_without_http_is_refused_at_once(url: str) -> None:
    with pytest.raises(httpx.InvalidURL, match="http:// or https://"):
        FeedbackClient(url)


def test_records_not_delivered_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    """At interpreter exit nobody reads ``failures``: the log still says what was dropped."""
    script = Script(refuse(400))
    with script.client(flush_interval=0.0) as client:
        client.enqueue(Feedback(1, 1))
    assert len(client.failures) == 1
    assert "1 queued record(s) not delivered: no" in caplog.text


def test_aclose_cuts_a_wait_between_attempts_short() -> None:
    busy = httpx.Response(429, headers={"Retry-After": "60"}, json={"error": "busy"})
    script = Script(then=lambda request: busy)

    async def scenario() -> float:
        client = AsyncFeedbackClient(
            transport=httpx.MockTransport(script), retry=FAST, flush_interval=0.0
        )
        await client.enqueue(Feedback(1, 1))
        while not script.bodies:  # the worker's first attempt, then its wait
            await asyncio.sleep(0.01)
        start = time.monotonic()
        await client.aclose(timeout=0.3)
        assert [f.status for f in client.failures] == [None]
        return time.monotonic() - start

    assert asyncio.run(scenario()) < 5


def test_flush_from_an_on_error_callback_is_refused_not_a_deadlock() -> None:
    raised: list[str] = []

    def on_error(failure: Failure) -> None:
        try:
            client.flush()
        except RuntimeError as error:
            raised.append(str(error))

    client = Script(refuse(400)).client(flush_interval=0.0, on_error=on_error)
    with client:
        client.enqueue(Feedback(1, 1))
        assert client.flush(timeout=10)
    assert raised == ["flush() from the client's own worker would wait for itself"]


def test_aclose_waits_for_an_enqueue_waiting_for_room() -> None:
    """The slot the worker frees goes to the record waiting for it, not to aclose()'s end of
    the queue: that record is sent (or reported), never left in a queue nobody reads."""

    async def scenario() -> None:
        gate = asyncio.Event()
        sent: list[str] = []

        async def handler(request: httpx.Request) -> httpx.Response:
            items = json.loads(request.content)["items"]
            await gate.wait()
            sent.extend(item["id"] for item in items)
            return httpx.Response(
                200, json={"success": True, "accepted": len(items), "duplicates": 0}
            )

        client = AsyncFeedbackClient(
            transport=httpx.MockTransport(handler), max_queue=1, batch_size=1, flush_interval=0.0
        )
        ids = [await client.enqueue(Feedback(1, 1))]
        while client._queue.qsize():  # the worker takes it, and waits at the gate
            await asyncio.sleep(0)
        ids.append(await client.enqueue(Feedback(1, 1)))  # the queue is full now
        waiting = asyncio.create_task(client.enqueue(Feedback(1, 1)))
        while not client._enqueuing:
            await asyncio.sleep(0)
        gate.set()
        await client.aclose(timeout=2)
        ids.append(await waiting)
        assert sent == ids
        assert client.failures == []

    asyncio.run(scenario())


def test_flush_while_closing_waits_for_close_to_settle_everything() -> None:
    script = Script(then=lambda request: (_ for _ in ()).throw(httpx.ConnectError("down")))
    client = script.client(flush_interval=0.0)
    client.enqueue(Feedback(1, 1))
    wait_until(lambda: len(script.bodies) >= 1)
    closer = threading.Thread(target=client.close, kwargs={"timeout": 0.3})
    closer.start()
    wait_until(lambda: client.closed)
    assert client.flush(timeout=10)
    assert len(client.failures) == 1  # settled: reported, not merely out of the queue
    closer.join()


def test_an_answer_that_does_not_decode_is_retried_and_the_worker_lives_on() -> None:
    # What httpx raises for a 502 whose body says gzip and is not (a proxy's, say).
    script = Script(httpx.DecodingError("Error -3 while decompressing data"))
    with script.client(batch_size=2) as monitor:
        ids = [monitor.enqueue(Feedback(1, 1)) for _ in range(2)]
        assert monitor.flush(timeout=10)
        later = monitor.enqueue(Feedback(0, 0))
        assert monitor.flush(timeout=10)
    assert script.batches() == [ids, ids, [later]]
    assert (monitor.stats.accepted, monitor.failures) == (3, [])


def test_an_answer_of_the_wrong_shape_is_reported_and_the_worker_lives_on() -> None:
    wrong = httpx.Response(200, json={"success": True, "accepted": "all of them"})
    script = Script(wrong)
    with script.client(batch_size=2) as monitor:
        ids = [monitor.enqueue(Feedback(1, 1)) for _ in range(2)]
        assert monitor.flush(timeout=10)
        later = monitor.enqueue(Feedback(0, 0))
        assert monitor.flush(timeout=10)
    assert [f.record.id for f in monitor.failures] == ids
    assert {f.status for f in monitor.failures} == {None}
    assert script.batches() == [ids, [later]]
    assert monitor.stats.accepted == 1


def test_the_async_worker_lives_on_after_an_answer_of_the_wrong_shape() -> None:
    wrong = httpx.Response(200, json={"success": True, "accepted": "all of them"})
    script = Script(wrong)

    async def run() -> AsyncFeedbackClient:
        transport = httpx.MockTransport(script)
        async with AsyncFeedbackClient(transport=transport, retry=FAST) as monitor:
            await monitor.enqueue(Feedback(1, 1, id="first"))
            await monitor.flush()
            await monitor.enqueue(Feedback(0, 0, id="second"))
            await monitor.flush()
        return monitor

    monitor = asyncio.run(run())
    assert [f.record.id for f in monitor.failures] == ["first"]
    assert (script.batches(), monitor.stats.accepted) == ([["first"], ["second"]], 1)


@contextlib.contextmanager
def answering(status: int, content_type: str, body: bytes) -> Iterator[str]:
    """A real HTTP server on a loopback port that answers every POST the same (as a proxy's
    login page does); its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass  # not on the test's stderr

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    serving = threading.Thread(target=server.serve_forever)
    serving.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        serving.join()
        server.server_close()


LOGIN_PAGE = (200, "text/html", b"<html>login</html>")
OTHER_JSON = (200, "application/json", b'{"status": "ok"}')
MISCOUNTED = (200, "application/json", b'{"success": true, "accepted": 0, "duplicates": 0}')


@pytest.mark.parametrize("answer", [LOGIN_PAGE, OTHER_JSON, MISCOUNTED])
def test_a_success_of_the_wrong_shape_fails_the_batch_not_silently(
    answer: tuple[int, str, bytes],
) -> None:
    reported: list[Failure] = []
    records: list[Feedback | Prediction] = [Prediction("p", 1), Feedback(None, 1, id="p")]
    records.append(Feedback(1, 0, id="f"))
    with (
        answering(*answer) as url,
        FeedbackClient(url, retry=FAST, batch_size=3, on_error=reported.append) as monitor,
    ):
        for record in records:
            monitor.enqueue(record)
        assert monitor.flush(timeout=WAIT)
        with pytest.raises(UnexpectedAnswer, match=r"^200 "):
            monitor.send_feedback_batch([Feedback(1, 1)])
        with pytest.raises(UnexpectedAnswer):
            monitor.log_predictions([Prediction("q", 0)])
    assert [failure.record for failure in reported] == records  # predictions go first
    assert {failure.status for failure in reported} == {None}  # may be sent again, safely
    assert (monitor.failures, monitor.stats.accepted, monitor.stats.failed) == (reported, 0, 3)


@pytest.mark.parametrize("answer", [LOGIN_PAGE, OTHER_JSON])
def test_an_immediate_call_answered_by_something_else_raises(
    answer: tuple[int, str, bytes],
) -> None:
    async def use(url: str) -> None:
        async with AsyncFeedbackClient(url, retry=FAST) as monitor:
            with pytest.raises(UnexpectedAnswer):
                await monitor.send_feedback(prediction=1, actual=1)
            with pytest.raises(UnexpectedAnswer):
                await monitor.log_prediction(id="p", prediction=1)
            with pytest.raises(UnexpectedAnswer):
                await monitor.send_feedback_batch([Feedback(1, 1)])
            await monitor.enqueue(Feedback(1, 0, id="queued"))
            await monitor.flush()
            assert [failure.record.id for failure in monitor.failures] == ["queued"]

    with answering(*answer) as url:
        with FeedbackClient(url, retry=FAST) as monitor:
            with pytest.raises(UnexpectedAnswer):
                monitor.send_feedback(prediction=1, actual=1)
            with pytest.raises(UnexpectedAnswer):
                monitor.send_feedback(id="p", actual=1)
            with pytest.raises(UnexpectedAnswer):
                monitor.log_prediction(id="p", prediction=1)
        asyncio.run(use(url))


def slowly(request: httpx.Request) -> httpx.Response:
    """A server that takes its time (2 ms) to answer."""
    time.sleep(0.002)
    return accept(request)


def test_flush_waits_for_what_was_queued_before_it_not_after() -> None:
    script = Script(then=slowly)
    stop = threading.Event()
    # One request per record: the producer keeps the queue from ever running empty.
    with script.client(batch_size=1, max_queue=100) as monitor:

        def produce() -> None:
            while not stop.is_set():
                monitor.enqueue(Feedback(1, 0))

        producer = threading.Thread(target=produce)
        producer.start()
        try:
            mine = monitor.enqueue(Feedback(1, 1, id="mine"))
            settled = monitor.flush(timeout=20)  # never, while the producer runs, before
        finally:
            stop.set()
            producer.join()
    assert settled
    assert mine in [id for batch in script.batches() for id in batch]


def test_the_async_flush_waits_for_what_was_queued_before_it_not_after() -> None:
    script = Script()

    async def answer_slowly(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.002)  # a server that takes its time
        return script(request)

    async def run() -> bool:
        transport = httpx.MockTransport(answer_slowly)
        async with AsyncFeedbackClient(
            transport=transport, retry=FAST, batch_size=1, max_queue=100
        ) as monitor:
            stop = asyncio.Event()

            async def produce() -> None:
                while not stop.is_set():
                    await monitor.enqueue(Feedback(1, 0))
                    await asyncio.sleep(0)

            producer = asyncio.create_task(produce())
            await monitor.enqueue(Feedback(1, 1, id="mine"))
            try:
                await asyncio.wait_for(monitor.flush(), 20)
            except TimeoutError:
                return False
            finally:
                stop.set()
                await producer
        return True

    assert asyncio.run(run())
    assert "mine" in [id for batch in script.batches() for id in batch]


class LateFlushMarks(queue.Queue[Any]):
    """A queue that holds a flush's mark back until the client has closed: the mark comes after
    the worker's end, as when the flushing thread is preempted at the wrong moment."""

    def __init__(self, maxsize: int, closed: threading.Event) -> None:
        super().__init__(maxsize)
        self.closed = closed

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if type(item).__name__ == "_Flush":
            assert self.closed.wait(WAIT)
        super().put(item, block, timeout)


def test_a_flush_whose_mark_comes_after_the_worker_ends_is_settled_by_close() -> None:
    script = Script()
    monitor = script.client()
    closed = threading.Event()
    monitor._queue = LateFlushMarks(monitor.max_queue, closed)
    monitor.enqueue(Feedback(1, 1))
    flushed: list[bool] = []
    flusher = threading.Thread(target=lambda: flushed.append(monitor.flush(timeout=WAIT)))
    flusher.start()
    wait_until(lambda: bool(monitor._flushes))  # it passed the check that the client is open
    monitor.close()
    closed.set()
    flusher.join()
    assert flushed == [True]
    assert monitor.stats.accepted == 1


def test_a_broken_delivery_reports_each_record_once_and_only_those_unsettled() -> None:
    bug = RuntimeError("what nothing foresaw")  # not a transport's error: no retry
    script = Script(refuse(422, index=1), bug)
    with script.client(batch_size=3) as monitor:
        for n in range(3):
            monitor.enqueue(Feedback(1, 1, id=f"id{n}"))
        assert monitor.flush(timeout=WAIT)
    reported = [(f.record.id, f.status) for f in monitor.failures]
    assert reported == [("id1", 422), ("id0", None), ("id2", None)]
    assert monitor.failures[1].message.startswith("not delivered: RuntimeError")
    assert monitor.stats.failed == 3
