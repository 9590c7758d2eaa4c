"""The Python client against a real server: immediate calls, background batches, refusals
reported and not retried, the module's example, and a server killed and restarted mid-stream
with nothing lost and nothing counted twice."""

import asyncio
import doctest
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import feedback_monitor.client
from feedback_monitor.client import (
    AsyncFeedbackClient,
    Failure,
    Feedback,
    FeedbackClient,
    Prediction,
    Refused,
    Retry,
)
from feedback_monitor.testing import ServiceProcess
from tests.integration.helpers import serving, wait_until
from tests.integration.views import Pair, cells, models

pytestmark = pytest.mark.integration

FAST = Retry(attempts=3, base=0.01, cap=0.05)


def counts(http: httpx.Client, model: str) -> dict[str, int]:
    return dict(models(http)[(model, "")]["counts"])


def mix(count: int, seed: int) -> list[Pair]:
    rng = random.Random(seed)
    return [(rng.randint(0, 1), rng.randint(0, 1)) for _ in range(count)]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One server for the tests that do not restart it; each sends to models of its own."""
    root = tmp_path_factory.mktemp("client")
    with serving(root / "data", log_path=root / "service.log") as started:
        yield started


def test_immediate_calls_return_typed_answers(
    service: ServiceProcess, client: httpx.Client
) -> None:
    with FeedbackClient(service.url, retry=FAST) as monitor:
        stored = monitor.log_prediction(id="p-1", prediction=1, model="imm", score=0.9)
        assert stored == (stored.id, False)
        assert monitor.log_prediction(id="p-1", prediction=1, model="imm").duplicate
        labelled = monitor.send_feedback(id="p-1", actual=1)
        assert (labelled.id, labelled.duplicate, labelled.metrics.accuracy) == ("p-1", False, 1.0)
        assert monitor.send_feedback(id="p-1", actual=1).duplicate
        fresh = monitor.send_feedback(prediction=1, actual=0, model="imm")
        assert len(fresh.id) == 32  # a generated UUIDv7, in hex
        assert fresh.metrics.accuracy == 0.5
        with pytest.raises(Refused) as conflict:
            monitor.send_feedback(id="p-1", actual=0)
        assert (conflict.value.status, conflict.value.message) == (
            409,
            "Conflicting feedback for id",
        )
        with pytest.raises(ValueError, match="Values must be 0 or 1"):
            monitor.send_feedback(prediction=2, actual=0)
        batch = [Feedback(prediction=p, actual=a, model="imm") for p, a in [(0, 0), (1, 1)]]
        assert monitor.send_feedback_batch(batch) == (2, 0)
        assert monitor.log_predictions([Prediction("p-2", 0, "imm")]) == (1, 0)
    assert counts(client, "imm") == {"tp": 2, "tn": 1, "fp": 1, "fn": 0}


def test_queued_records_are_sent_in_batches(service: ServiceProcess, client: httpx.Client) -> None:
    pairs = mix(2_345, seed=1)
    with FeedbackClient(service.url, batch_size=200, flush_interval=0.05) as monitor:
        ids = [monitor.enqueue(Feedback(p, a, "queued")) for p, a in pairs]
        monitor.enqueue(Prediction("late-1", 1, "queued"))
        monitor.enqueue(Feedback(None, 0, id="late-1"))  # labels the prediction queued before it
        assert monitor.flush(timeout=30.0)
        assert (monitor.stats.accepted, monitor.failures) == (len(pairs) + 2, [])
    assert len(set(ids)) == len(ids)
    assert counts(client, "queued") == cells([*pairs, (1, 0)])


def test_refused_items_are_reported_and_the_rest_delivered(
    service: ServiceProcess, client: httpx.Client
) -> None:
    assert client.post("/feedback", json={"id": "taken", "prediction": 1, "actual": 1}).is_success
    reported: list[Failure] = []
    unknown, conflicting = Feedback(None, 1, id="nobody"), Feedback(1, 0, id="taken")
    with FeedbackClient(service.url, batch_size=50, on_error=reported.append) as monitor:
        for n in range(100):
            monitor.enqueue(Feedback(n % 2, 1, "refusals"))
            if n in (10, 60):
                monitor.enqueue(unknown if n == 10 else conflicting)
    assert [(f.record, f.status) for f in reported] == [(unknown, 404), (conflicting, 409)]
    assert monitor.failures == reported
    assert (monitor.stats.accepted, monitor.stats.failed) == (100, 2)
    assert counts(client, "refusals") == {"tp": 50, "tn": 0, "fp": 0, "fn": 50}


def test_what_is_queued_is_sent_at_interpreter_exit(
    service: ServiceProcess, client: httpx.Client
) -> None:
    script = (
        "import sys\n"
        "from feedback_monitor.client import Feedback, FeedbackClient\n"
        "monitor = FeedbackClient(sys.argv[1], flush_interval=60.0)\n"
        "for n in range(10):\n"
        "    monitor.enqueue(Feedback(1, n % 2, 'at-exit'))\n"
    )  # never closed: the atexit hook flushes
    subprocess.run([sys.executable, "-c", script, service.url], check=True, timeout=60)
    assert counts(client, "at-exit") == {"tp": 5, "tn": 0, "fp": 5, "fn": 0}


def test_the_async_client_calls_and_batches(service: ServiceProcess, client: httpx.Client) -> None:
    pairs = mix(1_000, seed=2)

    async def use() -> None:
        async with AsyncFeedbackClient(service.url, batch_size=128, flush_interval=0.05) as monitor:
            answer = await monitor.send_feedback(prediction=1, actual=1, model="async")
            assert not answer.duplicate
            assert (await monitor.log_prediction(id="a-1", prediction=0, model="async")).id == "a-1"
            for p, a in pairs:
                await monitor.enqueue(Feedback(p, a, "async"))
            await monitor.flush()
            assert (monitor.stats.accepted, monitor.failures) == (len(pairs), [])

    asyncio.run(use())
    assert counts(client, "async") == cells([(1, 1), *pairs])


def test_the_module_example_runs(service: ServiceProcess, client: httpx.Client) -> None:
    docstring = feedback_monitor.client.__doc__
    assert docstring is not None
    live = docstring.replace("http://127.0.0.1:5000", service.url).replace("# doctest: +SKIP", "")
    test = doctest.DocTestParser().get_doctest(live, {}, "client example", None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    assert runner.run(test, out=lambda text: None).failed == 0, "the example's output differs"
    assert counts(client, "fraud")["tp"] == 501


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[ServiceProcess]:
    with serving(tmp_path / "data", log_path=tmp_path / "service.log") as started:
        yield started


class Producer(threading.Thread):
    """Queues ``pairs`` at a steady pace, so that sending goes on while the server is down."""

    def __init__(self, monitor: FeedbackClient, pairs: list[Pair], model: str) -> None:
        super().__init__(name="producer")
        self.monitor, self.pairs, self.model = monitor, pairs, model
        self.queued = 0

    def run(self) -> None:
        for index, (p, a) in enumerate(self.pairs):
            self.monitor.enqueue(Feedback(p, a, self.model))
            self.queued += 1
            if index % 50 == 0:
                threading.Event().wait(0.002)  # a pace, not a condition


def restart(service: ServiceProcess) -> None:
    """kill -9, then the same data directory and port again."""
    service.kill()
    threading.Event().wait(0.3)  # requests fail meanwhile: that is the point
    service.start()


def test_a_server_killed_mid_stream_loses_and_doubles_nothing(
    restartable: ServiceProcess,
) -> None:
    pairs = mix(6_000, seed=3)
    with FeedbackClient(restartable.url, batch_size=100, flush_interval=0.02) as monitor:
        producer = Producer(monitor, pairs, "restart")
        producer.start()
        for target in (1_500, 3_000):
            wait_until(lambda: monitor.stats.accepted >= target, what="progress")  # noqa: B023
            restart(restartable)
        producer.join()
        assert monitor.flush(timeout=60.0)
    assert monitor.failures == []
    assert monitor.stats.retries > 0
    # A batch committed whose answer was lost went again: its items came back as duplicates.
    assert monitor.stats.accepted + monitor.stats.duplicates == len(pairs)
    with httpx.Client(base_url=restartable.url) as http:
        assert counts(http, "restart") == cells(pairs)


def test_the_async_client_rides_out_a_restart(restartable: ServiceProcess) -> None:
    pairs = mix(3_000, seed=4)

    async def use() -> None:
        async with AsyncFeedbackClient(restartable.url, batch_size=100, flush_interval=0.02) as m:
            for index, (p, a) in enumerate(pairs):
                await m.enqueue(Feedback(p, a, "async-restart"))
                if index == 1_000:
                    await asyncio.to_thread(restart, restartable)
            await m.flush()
            assert (m.stats.accepted + m.stats.duplicates, m.failures) == (len(pairs), [])

    asyncio.run(use())
    with httpx.Client(base_url=restartable.url) as http:
        assert counts(http, "async-restart") == cells(pairs)


class LosesAnswers(httpx.HTTPTransport):
    """Passes each request to the server and loses the answers to the first ``lost`` of them:
    the server commits, the client hears nothing (a connection cut before the answer)."""

    def __init__(self, lost: int) -> None:
        super().__init__()
        self.lost = lost

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        response.read()
        if self.lost:
            self.lost -= 1
            raise httpx.ReadError("connection cut before the answer", request=request)
        return response


def test_a_retry_after_a_lost_answer_counts_its_own_repeats_as_accepted(
    service: ServiceProcess, client: httpx.Client
) -> None:
    with FeedbackClient(service.url, retry=FAST, transport=LosesAnswers(1)) as monitor:
        first = monitor.send_feedback(prediction=1, actual=1, model="lost")
    assert not first.duplicate
    batch = [Feedback(1, n % 2, model="lost", id=f"lost-{n}") for n in range(10)]
    with FeedbackClient(service.url, retry=FAST, transport=LosesAnswers(1)) as monitor:
        assert monitor.send_feedback_batch(batch) == (10, 0)
    with FeedbackClient(
        service.url, retry=FAST, transport=LosesAnswers(1), batch_size=100
    ) as monitor:
        for n in range(100):
            monitor.enqueue(Feedback(n % 2, 1, model="lost"))
        assert monitor.flush(timeout=30)
        assert (monitor.stats.accepted, monitor.stats.duplicates, monitor.failures) == (100, 0, [])
        assert monitor.stats.retries == 1
    assert sum(counts(client, "lost").values()) == 111  # the server's own tally
    with FeedbackClient(service.url, retry=FAST) as monitor:  # repeats heard at once
        assert monitor.send_feedback(prediction=1, actual=1, model="lost", id=first.id).duplicate
        assert monitor.send_feedback_batch(batch[:3]) == (0, 3)
