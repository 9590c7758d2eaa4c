"""The client's requests, planned as generators that yield what to do (post, wait) and receive
the answers, so that the retries and the checks of answers are written once for the sync and the
async client; ``run`` and ``arun`` carry a plan out. Connection errors, timeouts, 408, 429 and
5xx are retried with exponential backoff and jitter (``Retry``); a 4xx is not."""

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

import httpx
import msgspec

from feedback_monitor import outgoing
from feedback_monitor.outgoing import Record
from feedback_monitor.schemas import BatchAccepted, PredictionBatchAccepted

T = TypeVar("T")
_HEADERS = {"content-type": "application/json"}
_RETRIED_4XX = (408, 429)


class FeedbackMonitorError(Exception):
    """What the client raises about the service's answers."""


class Refused(FeedbackMonitorError):
    """A 4xx: the service refused the request as sent; ``index`` names a batch's item at fault."""

    def __init__(self, status: int, message: str, index: int | None = None) -> None:
        at = "" if index is None else f" (item {index})"
        super().__init__(f"{status}: {message}{at}")
        self.status = status
        self.message = message
        self.index = index


class Unreachable(FeedbackMonitorError):
    """No answer worth having (connection error, timeout, 5xx) by the last attempt."""


class UnexpectedAnswer(FeedbackMonitorError):
    """A success status whose body is not the service's answer (a proxy's login page, say): what
    was sent may or may not have been committed; sending it again is safe (it keeps its ids)."""


class BatchResult(NamedTuple):
    """A committed batch: items counted, and repeats of ids counted before."""

    accepted: int
    duplicates: int


@dataclass
class Stats:
    """What the background worker has done so far."""

    accepted: int = 0
    duplicates: int = 0
    failed: int = 0
    retries: int = 0


@dataclass(frozen=True)
class Retry:
    """How often and how patiently to retry: the n-th wait is drawn between half and all of
    ``min(cap, base * 2 ** (n - 1))`` seconds. ``attempts`` bounds immediate calls only."""

    attempts: int = 5
    base: float = 0.1
    cap: float = 5.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or not 0 < self.base <= self.cap:
            raise ValueError("a Retry needs attempts of 1 or more and 0 < base <= cap")

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0.0, ceiling / 2)

    def exhausted(self, attempts: int) -> bool:
        return attempts >= self.attempts


def decoded(response: httpx.Response, shape: type[T]) -> T:
    """A success's body, which must be the service's answer: a 200 from a proxy's login page
    is not a commit."""
    try:
        return msgspec.json.decode(response.content, type=shape)
    except msgspec.DecodeError as error:  # a ValidationError too
        raise UnexpectedAnswer(
            f"{response.status_code} answer of an unexpected shape ({error}):"
            f" {response.text[:200]!r}"
        ) from None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def refusal(response: httpx.Response) -> Refused:
    body = _json(response)
    message = str(body.get("error", response.text[:200]))
    index = body.get("index")
    return Refused(response.status_code, message, index if isinstance(index, int) else None)


class Post(NamedTuple):
    path: str
    body: bytes


class Wait(NamedTuple):
    seconds: float


Answer = httpx.Response | httpx.RequestError | None
Plan = Generator[Post | Wait, Answer, T]
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)  # never reached it


class Answered(NamedTuple):
    """The answer worth having, and whether an earlier attempt may have been committed (its
    answer lost: a 5xx, or an error once sent), which the repeats it finds may then be."""

    response: httpx.Response
    retried_unknown: bool


def attempts(
    post: Post, retry: Retry, give_up: Callable[[int], bool], stats: Stats
) -> Plan[Answered]:
    """Post until an answer not worth retrying; ``Unreachable`` once ``give_up(attempts)``."""
    attempts, problem, unknown = 0, "not sent: the client closed", False
    while not give_up(attempts):
        answer = yield post
        attempts += 1
        if isinstance(answer, httpx.Response):
            if answer.status_code < 500 and answer.status_code not in _RETRIED_4XX:
                return Answered(answer, unknown)
            problem = f"{answer.status_code} {answer.text[:200]}"
            unknown |= answer.status_code >= 500
        else:
            problem = repr(answer)
            unknown |= not isinstance(answer, _UNSENT)
        if not give_up(attempts):
            stats.retries += 1
            yield Wait(max(retry.delay(attempts), _retry_after(answer)))
    raise Unreachable(f"POST {post.path}: {problem} ({attempts} attempts)")


def _retry_after(answer: Answer) -> float:
    """The wait a 429 or 503 asks for in whole seconds (Retry-After), at most a minute."""
    value = answer.headers.get("retry-after", "") if isinstance(answer, httpx.Response) else ""
    return min(float(value), 60.0) if value.isascii() and value.isdigit() else 0.0


def call(post: Post, retry: Retry) -> Plan[Answered]:
    """One immediate request: its success (``Answered``); or ``Refused`` or ``Unreachable``."""
    answered = yield from attempts(post, retry, retry.exhausted, Stats())
    if answered.response.is_success:
        return answered
    raise refusal(answered.response)


_BATCH_ANSWERS: dict[str, type[BatchAccepted | PredictionBatchAccepted]] = {
    "/feedback/batch": BatchAccepted,
    "/predictions/batch": PredictionBatchAccepted,
}


def counted(path: str, response: httpx.Response, sent: int, retried_unknown: bool) -> BatchResult:
    """A batch's answer, which accounts for each item sent; repeats that may be an earlier
    attempt's count as accepted."""
    answer = decoded(response, _BATCH_ANSWERS[path])
    result = BatchResult(answer.accepted, answer.duplicates)
    if min(result) < 0 or sum(result) != sent:
        raise UnexpectedAnswer(
            f"{response.status_code} counting {result.accepted} accepted and"
            f" {result.duplicates} duplicates of {sent} items sent"
        )
    return BatchResult(sum(result), 0) if retried_unknown else result


def batch_call(path: str, records: Iterable[Record], retry: Retry) -> Plan[BatchResult]:
    items = outgoing.items(records)
    if not items:
        return BatchResult(0, 0)
    response, retried_unknown = yield from call(Post(path, outgoing.batch_body(items)), retry)
    return counted(path, response, len(items), retried_unknown)


class _Stepper(Generic[T]):
    """Runs a plan one step at a time: ``step`` is what it asks for, ``result`` its value."""

    result: T

    def __init__(self, plan: Plan[T]) -> None:
        self._plan = plan
        self.step: Post | Wait | None = None
        self.answer(None)

    def answer(self, answer: Answer) -> None:
        try:
            self.step = self._plan.send(answer)
        except StopIteration as done:
            self.step, self.result = None, done.value


def _post(http: httpx.Client, post: Post) -> Answer:
    try:
        return http.post(post.path, content=post.body, headers=_HEADERS)
    except httpx.RequestError as error:  # a transport's, or an answer that does not decode
        return error


def _sleep(wait: Wait) -> Answer:
    time.sleep(wait.seconds)
    return None


def run(plan: Plan[T], http: httpx.Client, sleep: Callable[[Wait], Answer] = _sleep) -> T:
    stepper = _Stepper(plan)
    while (step := stepper.step) is not None:
        stepper.answer(_post(http, step) if isinstance(step, Post) else sleep(step))
    return stepper.result


async def _apost(http: httpx.AsyncClient, post: Post) -> Answer:
    try:
        return await http.post(post.path, content=post.body, headers=_HEADERS)
    except httpx.RequestError as error:
        return error


async def _asleep(wait: Wait) -> Answer:
    await asyncio.sleep(wait.seconds)
    return None


async def arun(
    plan: Plan[T],
    http: httpx.AsyncClient,
    asleep: Callable[[Wait], Awaitable[Answer]] = _asleep,
) -> T:
    stepper = _Stepper(plan)
    while (step := stepper.step) is not None:
        stepper.answer(await (_apost(http, step) if isinstance(step, Post) else asleep(step)))
    return stepper.result
