"""A Python client of Feedback Monitor: immediate calls, and batching in the background.

Immediate calls send one request and return its typed answer: ``log_prediction`` and
``send_feedback`` for one item, ``log_predictions`` and ``send_feedback_batch`` for a batch (all
or nothing, as the server takes it). ``enqueue`` puts a ``Feedback`` or ``Prediction`` on a
bounded queue and returns its id at once; a background worker sends the queue through the batch
endpoints when ``batch_size`` items wait, ``flush_interval`` seconds after the first of them, on
``flush()``, on ``close()`` (leaving a ``with`` block closes), and for ``FeedbackClient`` at
interpreter exit. Within one request's worth, predictions go before feedback, so a feedback can
label a prediction queued just before it.

Every item the client sends carries an id: the caller's, or a time-ordered UUIDv7 it generates
(``new_id``). The server counts an id once (a repeat with the same outcome is a duplicate, a
different outcome a 409) for as long as it remembers ids (its ``prediction_ttl``, 30 days by
default), so a request whose answer was lost can safely be sent again. Connection errors, timeouts,
408, 429 and 5xx are retried with exponential backoff and jitter (``Retry``); a 4xx is not. A
retry after an attempt that may have been committed (its answer lost) may find its own ids counted:
its repeats then count as accepted, not as duplicates, as an idempotent Kafka producer reads them.
An immediate call raises ``Refused`` for a 4xx, ``Unreachable`` when its attempts run out, and
``UnexpectedAnswer`` for a success whose body is not the service's (a proxy's login page, say).
The background worker retries without limit while the client is open and until ``close``'s
timeout after; for a 4xx it takes the item the server names out of the batch, reports it as a
``Failure`` (in ``failures``, and to ``on_error``) and sends the rest again (a 413 halves the batch
instead). Whatever has no answer at the close timeout, or an answer of the wrong shape, is reported
as failures too: nothing is dropped silently, nothing is counted twice.

Example, with a server on the default address:

>>> from feedback_monitor.client import Feedback, FeedbackClient
>>> with FeedbackClient("http://127.0.0.1:5000") as client:  # doctest: +SKIP
...     client.log_prediction(id="req-1", prediction=1, model="fraud", score=0.92)
...     labelled = client.send_feedback(id="req-1", actual=1)  # labels the stored prediction
...     print(labelled.metrics.accuracy)
...     for n in range(1000):
...         _ = client.enqueue(Feedback(prediction=n % 2, actual=1, model="fraud"))
...     client.flush()
...     print(client.stats.accepted, client.failures)
PredictionResult(id='req-1', duplicate=False)
1.0
True
1000 []
"""

import asyncio
import atexit
import contextlib
import enum
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, NamedTuple, Protocol, Self, TypedDict, TypeVar, Unpack

import httpx

from feedback_monitor import outgoing, retrying
from feedback_monitor.auth import bearer_headers
from feedback_monitor.outgoing import Record, new_id
from feedback_monitor.records import Feedback, InvalidRecord, Prediction
from feedback_monitor.retrying import (
    BatchResult,
    FeedbackMonitorError,
    Refused,
    Retry,
    Stats,
    UnexpectedAnswer,
    Unreachable,
)
from feedback_monitor.schemas import FeedbackAccepted, PredictionAccepted

__all__ = [
    "DEFAULT_URL",
    "AsyncFeedbackClient",
    "BatchResult",
    "Failure",
    "Feedback",
    "FeedbackClient",
    "FeedbackMonitorError",
    "FeedbackResult",
    "Fields",
    "InvalidRecord",
    "Metrics",
    "Options",
    "Prediction",
    "PredictionResult",
    "QueueFull",
    "Record",
    "Refused",
    "Retry",
    "Stats",
    "UnexpectedAnswer",
    "Unreachable",
    "new_id",
]

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:5000"


class QueueFull(FeedbackMonitorError):
    """``enqueue`` found no room in the queue within its timeout."""


class Metrics(NamedTuple):
    """The series' metrics over all committed feedback."""

    accuracy: float
    precision: float
    recall: float
    f1_score: float


class FeedbackResult(NamedTuple):
    """A committed feedback; ``duplicate`` when its id had been counted already."""

    id: str
    metrics: Metrics
    duplicate: bool


class PredictionResult(NamedTuple):
    """A stored prediction; ``duplicate`` when its id had been stored the same already."""

    id: str
    duplicate: bool


class Failure(NamedTuple):
    """A queued record not known to be delivered: refused by the server (``status``), or with
    no answer by the time the client closed (``status`` None; it may have been committed with
    its answer lost, and sending it again is safe: it keeps its id)."""

    record: Record
    status: int | None
    message: str


class Fields(TypedDict, total=False):
    """The optional fields of a prediction or a feedback."""

    model: str
    version: str
    score: float
    timestamp: float | datetime  # when the prediction was made; a datetime needs its zone


class Options(TypedDict, total=False):
    """What both clients can be told (each key is a keyword argument, all optional).

    ``timeout``: seconds per request (10). ``retry``: a ``Retry`` (5 attempts for immediate
    calls). ``batch_size``: most records a background request (500). ``flush_interval``: seconds
    a record may wait for its batch to fill (1.0). ``max_queue``: most records queued (10,000;
    the worker holds up to ``batch_size`` more, being sent).
    ``close_timeout``: seconds closing keeps retrying what is queued (10). ``on_error``: called
    with each ``Failure``. ``token``: sent as ``Authorization: Bearer``.
    """

    timeout: float
    retry: Retry
    batch_size: int
    flush_interval: float
    max_queue: int
    close_timeout: float
    on_error: Callable[[Failure], None] | None
    token: str | None


class _Signal(enum.Enum):
    CLOSE = "close"


class _Flush(NamedTuple):
    """A flush's mark in the queue: what was queued before it is settled once it is taken."""

    settled: threading.Event | asyncio.Event


_Queued = outgoing.Item | _Signal | _Flush


class _Delivery:
    """The background worker's plans: queued items through the batch endpoints, with the
    stats and failures they leave."""

    def __init__(self, retry: Retry, on_error: Callable[[Failure], None] | None) -> None:
        self.retry = retry
        self.on_error = on_error
        self.stats = Stats()
        self.failures: list[Failure] = []
        self.deadline = math.inf  # set by close: retry until then
        self._settled: set[int] = set()  # ids of the items in hand that have their outcome

    def give_up(self, attempts: int) -> bool:
        return time.monotonic() > self.deadline

    def left(self, end: float) -> float:
        """The seconds from now to ``end``, or to the deadline if that comes first."""
        return max(0.0, min(end, self.deadline) - time.monotonic())

    def deliver(self, items: list[outgoing.Item]) -> retrying.Plan[None]:
        self._settled = set()
        predictions = [item for item in items if isinstance(item.record, Prediction)]
        feedback = [item for item in items if isinstance(item.record, Feedback)]
        for path, chunk in (("/predictions/batch", predictions), ("/feedback/batch", feedback)):
            if chunk:
                yield from self._batch(path, chunk)

    def _batch(self, path: str, items: list[outgoing.Item]) -> retrying.Plan[None]:
        todo = [items]
        while todo:
            chunk = todo.pop()
            post = retrying.Post(path, outgoing.batch_body(chunk))
            try:
                answered = yield from retrying.attempts(post, self.retry, self.give_up, self.stats)
            except Unreachable as error:
                self.fail([item for rest in (*todo, chunk) for item in rest], None, str(error))
                return
            todo.extend(self._settle(path, chunk, answered))

    def _settle(
        self, path: str, chunk: list[outgoing.Item], answered: retrying.Answered
    ) -> list[list[outgoing.Item]]:
        """Count an answer; the parts of ``chunk`` to send again (last first)."""
        response = answered.response
        if response.is_success:
            try:
                result = retrying.counted(path, response, len(chunk), answered.retried_unknown)
            except UnexpectedAnswer as error:
                self.fail(chunk, None, str(error))
                return []
            self._settled.update(map(id, chunk))
            self.stats.accepted += result.accepted
            self.stats.duplicates += result.duplicates
            return []
        refused = retrying.refusal(response)
        index = refused.index
        if index is not None and 0 <= index < len(chunk):
            self.fail([chunk[index]], refused.status, refused.message)
            rest = chunk[:index] + chunk[index + 1 :]
            return [rest] if rest else []
        if refused.status == 413 and len(chunk) > 1:
            half = len(chunk) // 2
            return [chunk[half:], chunk[:half]]
        self.fail(chunk, refused.status, refused.message)
        return []

    def broke(self, items: list[outgoing.Item], error: Exception) -> None:
        """Delivering the items failed on what nothing here foresaw (a bug): report them all,
        rather than lose them with the worker."""
        unsettled = [item for item in items if id(item) not in self._settled]
        log.error("delivering %d queued record(s) failed", len(unsettled), exc_info=error)
        self.fail(unsettled, None, f"not delivered: {error!r}")

    def fail(self, items: list[outgoing.Item], status: int | None, message: str) -> None:
        log.warning("%d queued record(s) not delivered: %s", len(items), message)
        self._settled.update(map(id, items))
        for item in items:
            failure = Failure(item.record, status, message)
            self.failures.append(failure)
            self.stats.failed += 1
            if self.on_error is not None:
                try:
                    self.on_error(failure)
                except Exception:  # the caller's callback must not stop the worker
                    log.exception("on_error callback failed")


class _Batch:
    """Items waiting for the next request, and when it is due."""

    def __init__(self, size: int, interval: float) -> None:
        self.size = size
        self.interval = interval
        self.items: list[outgoing.Item] = []
        self.due = math.inf

    def timeout(self) -> float | None:
        """How long the worker may wait for more (None: until something comes)."""
        return max(0.0, self.due - time.monotonic()) if self.items else None

    def add(self, got: _Queued | None) -> list[outgoing.Item]:
        """Take what the queue gave (None: the interval passed); the items to send now."""
        if isinstance(got, outgoing.Item):
            if not self.items:
                self.due = time.monotonic() + self.interval
            self.items.append(got)
            if len(self.items) < self.size:
                return []
        items, self.items = self.items, []
        return items


class _Tasks(Protocol):
    def task_done(self) -> None: ...


def _done(tasks: _Tasks, sent: list[outgoing.Item], got: _Queued | None) -> None:
    """Mark the items sent, and a signal taken from the queue, as done."""
    for _ in range(len(sent) + isinstance(got, _Signal | _Flush)):
        tasks.task_done()


class _Client:
    """What both clients share: settings, validation and the background delivery's state."""

    def __init__(self, url: str, options: Options) -> None:
        if unknown := sorted(options.keys() - Options.__annotations__.keys()):
            raise TypeError(f"unknown option(s) {', '.join(unknown)}; see Options")  # a typo
        batch_size, flush_interval = (
            options.get("batch_size", 500),
            options.get("flush_interval", 1.0),
        )
        if batch_size < 1 or flush_interval < 0:
            raise ValueError("batch_size must be 1 or more and flush_interval 0 or more")
        self.retry = options.get("retry") or Retry()
        self.batch = _Batch(batch_size, flush_interval)
        self.delivery = _Delivery(self.retry, options.get("on_error"))
        self.max_queue = options.get("max_queue", 10_000)
        if self.max_queue < 1:  # a queue of size 0 would be unbounded
            raise ValueError("max_queue must be 1 or more")
        self.close_timeout = options.get("close_timeout", 10.0)
        self.closed = False
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:  # else retried as down
            raise httpx.InvalidURL(f"{url!r}: the service's URL is http:// or https://, a host")
        self.http_options: dict[str, Any] = {
            "base_url": url,
            "timeout": options.get("timeout", 10.0),
            "headers": bearer_headers(options.get("token")),
        }
        # The flushes waiting for their mark; close settles those whose mark came too late.
        self._flushes: set[threading.Event | asyncio.Event] = set()

    def _taken(self, got: _Queued | None) -> None:
        """The worker took ``got``: a flush's mark, everything before which is settled."""
        if isinstance(got, _Flush):
            self._flushes.discard(got.settled)
            got.settled.set()

    def _settle_flushes(self) -> None:
        """At close, the worker ended: flushes whose mark came after it are settled too."""
        for settled in self._flushes:
            settled.set()
        self._flushes.clear()

    @property
    def stats(self) -> Stats:
        """What the background worker has done so far."""
        return self.delivery.stats

    @property
    def failures(self) -> list[Failure]:
        """Every queued record not delivered, in the order found."""
        return list(self.delivery.failures)

    def _queued(self, record: Record) -> outgoing.Item:
        if self.closed:
            raise RuntimeError("the client is closed")
        return outgoing.item(record)

    def _prediction(
        self, id: str, prediction: int, fields: Fields
    ) -> retrying.Plan[PredictionResult]:
        item = outgoing.item(_record(Prediction, fields, id=id, prediction=prediction))
        response, retried_unknown = yield from retrying.call(
            retrying.Post("/predictions", item.body), self.retry
        )
        answer = retrying.decoded(response, PredictionAccepted)
        return PredictionResult(str(item.record.id), answer.duplicate and not retried_unknown)

    def _feedback(
        self, actual: int, prediction: int | None, id: str | None, fields: Fields
    ) -> retrying.Plan[FeedbackResult]:
        item = outgoing.item(_record(Feedback, fields, prediction=prediction, actual=actual, id=id))
        response, retried_unknown = yield from retrying.call(
            retrying.Post("/feedback", item.body), self.retry
        )
        answer = retrying.decoded(response, FeedbackAccepted)
        m = answer.metrics
        metrics = Metrics(m.accuracy, m.precision, m.recall, m.f1_score)
        duplicate = answer.duplicate and not retried_unknown
        return FeedbackResult(str(item.record.id), metrics, duplicate)


R = TypeVar("R", Feedback, Prediction)


def _record(kind: type[R], fields: Fields, **given: Any) -> R:
    """An immediate call's record (``outgoing.item`` makes its datetime seconds, as any
    record's)."""
    arguments: dict[str, Any] = {**given, **fields}  # a datetime where the record has a float
    return kind(**arguments)


class FeedbackClient(_Client):
    """A client of the service at ``url``; thread-safe. See the module's documentation.

    ``options`` are those of ``Options``. With the queue full, ``enqueue`` waits up to
    ``enqueue_timeout`` seconds for room (None: as long as it takes), then raises ``QueueFull``.
    ``transport`` replaces httpx's own (for tests).
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        enqueue_timeout: float | None = None,
        transport: httpx.BaseTransport | None = None,
        **options: Unpack[Options],
    ) -> None:
        super().__init__(url, options)
        self._http = httpx.Client(**self.http_options, transport=transport)
        self._queue: queue.Queue[_Queued] = queue.Queue(self.max_queue)
        self._enqueue_timeout = enqueue_timeout
        self._worker: threading.Thread | None = None  # started by the first enqueue
        self._lock = threading.Lock()
        self._enqueued = threading.Condition(self._lock)
        self._enqueuing = 0  # enqueue calls waiting for room in the queue
        self._closing = threading.Event()  # ends the worker's waits between attempts
        self._closed = threading.Event()  # close() has settled everything

    def log_prediction(
        self, *, id: str, prediction: int, **fields: Unpack[Fields]
    ) -> PredictionResult:
        """Store what the model predicted, to be labelled by a feedback with the same id."""
        return retrying.run(self._prediction(id, prediction, fields), self._http)

    def send_feedback(
        self,
        *,
        actual: int,
        prediction: int | None = None,
        id: str | None = None,
        **fields: Unpack[Fields],
    ) -> FeedbackResult:
        """Count an outcome; without ``prediction`` it labels the stored prediction ``id``."""
        return retrying.run(self._feedback(actual, prediction, id, fields), self._http)

    def log_predictions(self, records: Iterable[Prediction]) -> BatchResult:
        """Store predictions in one request, all or none."""
        return retrying.run(
            retrying.batch_call("/predictions/batch", records, self.retry), self._http
        )

    def send_feedback_batch(self, records: Iterable[Feedback]) -> BatchResult:
        """Count feedback in one request, all or none (records without an id get one)."""
        return retrying.run(retrying.batch_call("/feedback/batch", records, self.retry), self._http)

    def enqueue(self, record: Record) -> str:
        """Queue a record for the background worker; its id (generated if it had none)."""
        # close() waits for the records accepted here to be queued before it queues its end,
        # so the worker sends them or reports them, never leaves them behind.
        with self._lock:
            item = self._queued(record)
            self._start()
            self._enqueuing += 1
        try:
            self._queue.put(item, timeout=self._enqueue_timeout)
        except queue.Full:
            raise QueueFull(f"no room in the queue within {self._enqueue_timeout} s") from None
        finally:
            with self._lock:
                self._enqueuing -= 1
                self._enqueued.notify_all()
        return str(item.record.id)

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued so far now; whether it was all settled within ``timeout``
        (what is queued meanwhile is not waited for). Not from an ``on_error`` callback, which
        the worker runs: RuntimeError."""
        if threading.current_thread() is self._worker:  # an on_error callback, say
            raise RuntimeError("flush() from the client's own worker would wait for itself")
        end = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            started, closed = self._worker is not None, self.closed
            settled = threading.Event()
            if started and not closed:
                self._flushes.add(settled)  # close() sets it if the worker never takes it
        if not started:  # nothing was ever queued
            return True
        if closed:  # close() settles everything
            return self._closed.wait(timeout)
        try:
            self._queue.put(_Flush(settled), timeout=timeout)
        except queue.Full:
            return False
        return settled.wait(None if end is None else max(0.0, end - time.monotonic()))

    def close(self, timeout: float | None = None) -> None:
        """Send what is queued, retrying up to ``timeout`` seconds (``close_timeout``; a request
        in flight then runs to its own timeout); then report what has no answer as failures,
        and close the connections."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        if (worker := self._worker) is not None:
            atexit.unregister(self.close)
            self.delivery.deadline = time.monotonic() + (
                self.close_timeout if timeout is None else timeout
            )
            self._closing.set()
            with self._lock:  # past the deadline the worker drains the queue: they get room
                self._enqueued.wait_for(lambda: self._enqueuing == 0)
            self._queue.put(_Signal.CLOSE)
            worker.join()
            self._settle_leftovers()
        self._settle_flushes()  # none is added once closed is set
        self._http.close()
        self._closed.set()

    def _settle_leftovers(self) -> None:
        """What came after the worker's end: a flush's signal (close() has settled what it
        waits for), or a record, which is reported (none should be)."""
        while True:
            try:
                got = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(got, outgoing.Item):
                self.delivery.fail([got], None, "not sent: the client closed")
            self._queue.task_done()  # a flush's mark: close() sets it below

    def _start(self) -> None:
        """Start the worker if it is not running (under ``_lock``)."""
        if self._worker is None:
            self._worker = threading.Thread(
                target=self._work, name="feedback-monitor-client", daemon=True
            )
            self._worker.start()
            atexit.register(self.close)

    def _work(self) -> None:
        while True:
            got = self._get(self.batch.timeout())
            if sent := self.batch.add(got):
                try:
                    retrying.run(self.delivery.deliver(sent), self._http, self._sleep)
                except Exception as error:  # the worker lives on: the next batch may go
                    self.delivery.broke(sent, error)
            _done(self._queue, sent, got)
            self._taken(got)
            if got is _Signal.CLOSE:
                return

    def _sleep(self, wait: retrying.Wait) -> retrying.Answer:
        """Wait between attempts, but not past the deadline close() sets meanwhile."""
        end = time.monotonic() + wait.seconds
        if self._closing.wait(wait.seconds):
            time.sleep(self.delivery.left(end))
        return None

    def _get(self, timeout: float | None) -> _Queued | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncFeedbackClient(_Client):
    """The asyncio twin of ``FeedbackClient``: the same calls, awaited, and a worker task.

    There is no flush at interpreter exit (the event loop is gone by then): close it, or use
    ``async with``. ``enqueue`` waits for room in the queue.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        **options: Unpack[Options],
    ) -> None:
        super().__init__(url, options)
        self._http = httpx.AsyncClient(**self.http_options, transport=transport)
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue(self.max_queue)
        self._worker: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()  # ends the worker's waits between attempts
        self._enqueuing = 0  # enqueue calls waiting for room in the queue
        self._no_enqueue = asyncio.Event()  # set while there are none
        self._no_enqueue.set()
        self._closed = asyncio.Event()  # aclose() has settled everything

    async def log_prediction(
        self, *, id: str, prediction: int, **fields: Unpack[Fields]
    ) -> PredictionResult:
        """Store what the model predicted, to be labelled by a feedback with the same id."""
        return await retrying.arun(self._prediction(id, prediction, fields), self._http)

    async def send_feedback(
        self,
        *,
        actual: int,
        prediction: int | None = None,
        id: str | None = None,
        **fields: Unpack[Fields],
    ) -> FeedbackResult:
        """Count an outcome; without ``prediction`` it labels the stored prediction ``id``."""
        return await retrying.arun(self._feedback(actual, prediction, id, fields), self._http)

    async def log_predictions(self, records: Iterable[Prediction]) -> BatchResult:
        """Store predictions in one request, all or none."""
        return await retrying.arun(
            retrying.batch_call("/predictions/batch", records, self.retry), self._http
        )

    async def send_feedback_batch(self, records: Iterable[Feedback]) -> BatchResult:
        """Count feedback in one request, all or none (records without an id get one)."""
        return await retrying.arun(
            retrying.batch_call("/feedback/batch", records, self.retry), self._http
        )

    async def enqueue(self, record: Record) -> str:
        """Queue a record for the background task; its id (generated if it had none)."""
        item = self._queued(record)
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name="feedback-monitor-client")
        # aclose() waits for the records accepted here to be queued before it queues its end:
        # a slot the worker frees goes to them, not to that end.
        self._enqueuing += 1
        self._no_enqueue.clear()
        try:
            await self._queue.put(item)
        finally:
            self._enqueuing -= 1
            if not self._enqueuing:
                self._no_enqueue.set()
        return str(item.record.id)

    async def flush(self) -> None:
        """Send everything queued so far now, and wait until it is settled (what is queued
        meanwhile is not waited for)."""
        if self._worker is None:  # nothing was ever queued, or aclose() settles everything
            if self.closed:
                await self._closed.wait()
            return
        settled = asyncio.Event()
        self._flushes.add(settled)  # aclose() sets it if the worker never takes it
        await self._queue.put(_Flush(settled))
        await settled.wait()

    async def aclose(self, timeout: float | None = None) -> None:
        """Send what is queued, retrying up to ``timeout`` seconds (``close_timeout``); then
        report what is still unsent as failures, and close the connections."""
        if self.closed:
            return
        self.closed = True
        worker, self._worker = self._worker, None
        try:
            if worker is not None:
                self.delivery.deadline = time.monotonic() + (
                    self.close_timeout if timeout is None else timeout
                )
                self._closing.set()
                await self._no_enqueue.wait()  # past the deadline the worker drains the queue
                await self._queue.put(_Signal.CLOSE)
                await worker
        finally:
            self._settle_flushes()
            await self._http.aclose()
            self._closed.set()

    async def _work(self) -> None:
        while True:
            got = await self._get(self.batch.timeout())
            if sent := self.batch.add(got):
                try:
                    await retrying.arun(self.delivery.deliver(sent), self._http, self._sleep)
                except Exception as error:  # the worker lives on: the next batch may go
                    self.delivery.broke(sent, error)
            _done(self._queue, sent, got)
            self._taken(got)
            if got is _Signal.CLOSE:
                return

    async def _sleep(self, wait: retrying.Wait) -> retrying.Answer:
        """Wait between attempts, but not past the deadline aclose() sets meanwhile."""
        end = time.monotonic() + wait.seconds
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), wait.seconds)
            await asyncio.sleep(self.delivery.left(end))
        return None

    async def _get(self, timeout: float | None) -> _Queued | None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                return await self._queue.get()
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
