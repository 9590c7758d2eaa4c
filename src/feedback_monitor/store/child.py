"""Runs the store in a child process, the server's single writer, with group commit: the SQLite
store, or the PostgreSQL one (``--store postgresql://...``), whose round trips then cost the
server's event loop nothing either.

A store thread inside the server has to win the GIL back from the busy event loop after every
SQLite call, which made each commit take several times its fsync under load. The child commits
on the other core instead. Requests are pipelined: the server never waits for one answer before
sending the next request, and the child merges every commit request that arrived while it was
busy into one transaction, so one fsync serves them all (group commit).

The child ignores SIGINT and SIGTERM and exits when its stdin closes: a dying server, even by
SIGKILL, leaves no writer behind once the transaction in hand is done.

Protocol: one JSON array per line each way; answers come in the order of the requests.

- ``["load"]`` -> ``["ok", states]``; ``["expire", before, [[resolution, cutoff], ...]]`` ->
  ``["ok", states]``; ``["ping"]`` -> ``["ok", null]``.
- ``["window", model, version, view, [[start, end, resolution], ...]]`` ->
  ``["ok", [[tp, tn, fp, fn], score_row or null]]``;
  ``["points", model, version, view, [start, end, resolution], step]`` ->
  ``["ok", [[start, tp, tn, fp, fn], ...]]``;
  ``["events", model, version, limit]`` -> ``["ok", [[detector, at, statistic], ...]]``.
- ``["write", entries]`` -> ``["ok", outcomes, states, stats]``: consecutive writes share one
  transaction; ``states`` are the series it touched, after it; ``stats`` is
  ``[feedback, seconds]`` of that transaction on the first answer it produced, else ``null``.
- Any failure -> ``["error", kind, "<exception>"]`` for each request it affected, where kind is
  ``lost`` for a commit whose end is unknown (the database's connection lost once its COMMIT had
  gone), ``unavailable`` for the store's own trouble (disk, lock, database down) and
  ``internal`` for a bug, whose traceback the child writes to stderr (the server's log); the
  child stays up.
"""

import asyncio
import collections
import logging
import os
import select
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, cast

import msgspec
import psycopg

from feedback_monitor import logs
from feedback_monitor.confusion import Counts
from feedback_monitor.errors import StoreBug, StoreError, StoreLost
from feedback_monitor.records import Feedback, Prediction
from feedback_monitor.scores import ScoreHistogram
from feedback_monitor.series import DriftStatus, Series, SeriesState
from feedback_monitor.store import (
    Accepted,
    DriftEvent,
    Entry,
    Point,
    Refused,
    Store,
    Totals,
    Window,
)
from feedback_monitor.store.sqlite import SQLiteStore
from feedback_monitor.windows import Span, TimeView

Row = tuple[str, str, int, int, int, int]
WriteAnswer = tuple[list[Accepted | Refused], Totals]
OnCommit = Callable[[int, float], None]
"""Told the feedback count and the seconds of every transaction."""

STORE_VARIABLE = "FEEDBACK_MONITOR_STORE"
"""The store process's PostgreSQL URL (empty for SQLite), as the setting's own variable."""
EXIT_WAIT = 10.0  # seconds the store process has to finish its work and exit when closed
HUNG_EXIT_WAIT = 1.0  # the same for one still owing an answer its server gave up waiting for
_READ_SIZE = 1 << 16  # a pipe holds 64 KiB: a larger read only maps and unmaps more memory

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(list[Any]).decode


def to_rows(counts: Mapping[Series, Counts]) -> list[Row]:
    return [(model, version, c.tp, c.tn, c.fp, c.fn) for (model, version), c in counts.items()]


def from_rows(rows: list[Row]) -> dict[Series, Counts]:
    return {(row[0], row[1]): Counts(*row[2:]) for row in rows}


def encode_states(states: Totals) -> list[list[Any]]:
    return [[*series, *_fields(state)] for series, state in states.items()]


def _fields(s: SeriesState) -> list[Any]:
    scores = None if s.scores is None else s.scores.to_row()
    kept = [s.predicted, s.labelled, s.expired, s.delay_sum, s.delays, scores, s.drift]
    return [*s.counts.fields, *kept]


def decode_states(rows: list[list[Any]]) -> Totals:
    return {(row[0], row[1]): _state(*row[2:]) for row in rows}


def _state(tp: int, tn: int, fp: int, fn: int, *kept: Any) -> SeriesState:
    predicted, labelled, expired, delay_sum, delays, scores, drift = kept
    histogram = None if scores is None else ScoreHistogram.from_row(scores)
    detectors = tuple(DriftStatus(*detector) for detector in drift)
    counts = Counts(tp, tn, fp, fn)
    return SeriesState(
        counts, predicted, labelled, expired, delay_sum, tuple(delays), histogram, detectors
    )


def encode_entry(entry: Entry) -> list[Any]:
    keyed = [[i, "p" if isinstance(item, Prediction) else "f", *item] for i, item in entry.keyed]
    firsts = [[index, *series] for index, series in entry.firsts]
    return [to_rows(entry.deltas), keyed, entry.cap, firsts]


def decode_entry(encoded: list[Any]) -> Entry:
    rows, keyed, cap, firsts = encoded
    items: list[tuple[int, Feedback | Prediction]] = [
        (i, Prediction(*fields) if kind == "p" else Feedback(*fields)) for i, kind, *fields in keyed
    ]
    return Entry(from_rows(rows), items, cap, tuple((i, (m, v)) for i, m, v in firsts))


def encode_outcome(outcome: Accepted | Refused) -> list[Any]:
    return ["a" if isinstance(outcome, Accepted) else "r", *outcome]


def decode_outcome(encoded: list[Any]) -> Accepted | Refused:
    kind, *fields = encoded
    if kind == "a":
        return Accepted(fields[0], fields[1], [(m, v) for m, v in fields[2]])
    return Refused(*fields)


def decode_write(answer: list[Any]) -> tuple[list[Accepted | Refused], Totals]:
    outcomes, states = answer
    return [decode_outcome(o) for o in outcomes], decode_states(states)


_FAILURES: dict[str, Callable[[str], Exception]] = {"lost": StoreLost, "unavailable": StoreError}
"""The exception of each kind of failure the store process answers; any other is a bug."""


class ChildStore:
    """The async face of the store process; requests are pipelined and answered in order.

    ``write`` returns a plain future, resolved straight from the pipe's data callback: the hot
    path creates no task and resumes no coroutine per commit.
    """

    def __init__(
        self, data_dir: Path, on_commit: OnCommit = lambda size, seconds: None, url: str = ""
    ) -> None:
        self.data_dir = data_dir
        self.url = url  # of a PostgreSQL database; empty for SQLite under data_dir
        self._on_commit = on_commit
        self._pipe: _Pipe | None = None
        self._starting: asyncio.Future[_Pipe] | None = None

    async def _start(self) -> "_Pipe":
        loop = asyncio.get_running_loop()
        _, pipe = await loop.subprocess_exec(
            lambda: _Pipe(self._on_commit),
            *(sys.executable, "-m", "feedback_monitor.store.child", str(self.data_dir)),
            stderr=None,
            # Not an argument, which every local user may read: the URL may hold a password.
            env={**os.environ, STORE_VARIABLE: self.url},
        )
        self._pipe = pipe
        return pipe

    async def _running(self) -> "_Pipe":
        """The live pipe; a store process that died is replaced, once, by the first caller."""
        if self._pipe is not None and self._pipe.gone is None:
            return self._pipe
        if self._starting is None or self._starting.done():
            self._starting = asyncio.ensure_future(self._start())
        return await asyncio.shield(self._starting)

    async def _ask(self, request: list[Any]) -> Any:
        """The answer to one request, from the live store process."""
        return await (await self._running()).send(request)

    async def _write_when_running(self, request: list[Any]) -> "WriteAnswer":
        return decode_write(await self._ask(request))

    @property
    def pid(self) -> int | None:
        """The store process's id while it runs."""
        return self._pipe.pid if self._pipe is not None and self._pipe.gone is None else None

    async def load(self) -> Totals:
        return decode_states(await self._ask(["load"]))

    def write(self, entries: Sequence[Entry]) -> "asyncio.Future[WriteAnswer]":
        request = ["write", [encode_entry(entry) for entry in entries]]
        if self._pipe is None or self._pipe.gone is not None:
            return asyncio.ensure_future(self._write_when_running(request))
        return self._pipe.send(request, decode_write)

    async def expire(self, before: float, cutoffs: Mapping[int, float] | None = None) -> Totals:
        request = ["expire", before, list((cutoffs or {}).items())]
        return decode_states(await self._ask(request))

    async def window(self, series: Series, view: TimeView, spans: Sequence[Span]) -> Window:
        request = ["window", *series, view, [[s.start, s.end, s.resolution] for s in spans]]
        counts, row = await self._ask(request)
        return Window(Counts(*counts), None if row is None else ScoreHistogram.from_row(row))

    async def points(self, series: Series, view: TimeView, span: Span, step: int) -> list[Point]:
        request = ["points", *series, view, [span.start, span.end, span.resolution], step]
        rows = await self._ask(request)
        return [(start, Counts(*counts)) for start, *counts in rows]

    async def events(self, series: Series, limit: int) -> list[DriftEvent]:
        rows = await self._ask(["events", *series, limit])
        return [DriftEvent(*row) for row in rows]

    async def ping(self) -> None:
        await self._ask(["ping"])

    async def close(self) -> None:
        if self._pipe is not None and self._pipe.gone is None:
            await self._pipe.close()


class _Pipe(asyncio.SubprocessProtocol):
    """The server's end of the pipes: writes requests, resolves answers in order."""

    def __init__(self, on_commit: OnCommit) -> None:
        self._on_commit = on_commit
        self._transport: asyncio.SubprocessTransport | None = None
        self._waiting: collections.deque[tuple[asyncio.Future[Any], Callable[[Any], Any]]]
        self._waiting = collections.deque()
        self._buffer = b""
        self.gone: StoreError | None = None
        self.pid = 0
        self._exited = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement these interfaces without subclassing them.
        self._transport = cast(asyncio.SubprocessTransport, transport)
        self.pid = self._transport.get_pid()

    def send(
        self, request: Sequence[object], convert: Callable[[Any], Any] = lambda value: value
    ) -> asyncio.Future[Any]:
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        assert self._transport is not None
        stdin = cast(asyncio.WriteTransport, self._transport.get_pipe_transport(0))
        if stdin is None or stdin.is_closing():
            self.gone = self.gone or StoreError("store process does not take requests")
        if self.gone is not None:
            answer.set_exception(self.gone)
            return answer
        self._waiting.append((answer, convert))
        stdin.write(_encode(request) + b"\n")
        return answer

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for line in lines:
            answer, convert = self._waiting.popleft()
            if not answer.done():  # its caller may have been cancelled
                try:
                    self._resolve(answer, convert, _decode(line))
                except Exception as error:  # a bug reading this answer: the next are in step
                    answer.set_exception(error)

    def _resolve(
        self, answer: asyncio.Future[Any], convert: Callable[[Any], Any], message: list[Any]
    ) -> None:
        if message[0] != "ok":
            kind, detail = message[1:3]
            answer.set_exception(_FAILURES.get(kind, StoreBug)(detail))
            return
        if len(message) > 3 and message[3] is not None:
            self._on_commit(*message[3])
        answer.set_result(convert(message[1:3] if len(message) > 2 else message[1]))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:  # its stdout is closed: every answer it will ever give has arrived
            self._fail_all(StoreLost(f"store process stopped answering ({exc or 'end of output'})"))

    def process_exited(self) -> None:
        assert self._transport is not None
        self._fail_all(StoreLost(f"store process exited with {self._transport.get_returncode()}"))
        self._transport.close()  # releases the pipes of the dead process
        self._exited.set_result(None)

    def _fail_all(self, error: StoreLost) -> None:
        self.gone = self.gone or error
        while self._waiting:
            answer, _ = self._waiting.popleft()
            if not answer.done():
                answer.set_exception(self.gone)

    async def close(self) -> None:
        """Close the child's stdin: it finishes what it has, then exits; one that hangs (a disk
        or database that does not answer) is killed after ``EXIT_WAIT``, its transaction then
        rolled back by the database. One that still owes an answer awaited is hung in it (the
        recorder waits for every write before it closes the store, or gives up on it, whose
        future it keeps; an expiry cancelled by the shutdown has its future cancelled, and may
        just be long), so it gets ``HUNG_EXIT_WAIT``: a shutdown then stays within 30 s."""
        assert self._transport is not None
        stdin = self._transport.get_pipe_transport(0)
        assert stdin is not None
        stdin.close()
        hung = any(not answer.done() for answer, _ in self._waiting)
        patience = HUNG_EXIT_WAIT if hung else EXIT_WAIT
        try:
            await asyncio.wait_for(asyncio.shield(self._exited), patience)
        except TimeoutError:
            log.error("the store process did not exit within %g s: killed", patience)
            self._transport.kill()
            await self._exited


# The child's side.


def _available_lines(stdin: BinaryIO) -> Iterator[list[bytes]]:
    """Every complete line that has arrived, waiting only when there is none."""
    fd = stdin.fileno()
    buffer = b""
    while True:
        select.select([fd], [], [])
        chunk = os.read(fd, _READ_SIZE)
        buffer += chunk
        while chunk and select.select([fd], [], [], 0)[0]:
            chunk = os.read(fd, _READ_SIZE)
            buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        if lines:
            yield lines
        if not chunk:  # end of input: the server is gone or done
            return


def _write_all(store: Store, requests: list[list[Any]]) -> list[list[object]]:
    """One transaction for all the write requests; one answer for each."""
    started = time.perf_counter()
    try:
        entries = [[decode_entry(e) for e in request] for request in requests]
        outcomes, totals = store.write([e for batch in entries for e in batch], time.time())
    except Exception as error:
        return [_failure(error)] * len(requests)
    feedback = sum(o.accepted for o in outcomes if isinstance(o, Accepted))
    stats: list[object] | None = [feedback, time.perf_counter() - started]
    states = encode_states(totals)
    answers: list[list[object]] = []
    for batch in entries:
        mine, outcomes = outcomes[: len(batch)], outcomes[len(batch) :]
        answers.append(["ok", [encode_outcome(o) for o in mine], states, stats])
        stats = None
    return answers


def _answer_one(store: Store, request: list[Any]) -> list[object]:
    try:
        match request:
            case ["load"]:
                return ["ok", encode_states(store.load())]
            case ["expire", before, cutoffs]:
                return ["ok", encode_states(store.expire(before, dict(cutoffs)))]
            case ["window", model, version, view, spans]:
                window = store.window((model, version), view, [Span(*s) for s in spans])
                scores = window.scores.to_row() if window.scores is not None else None
                return ["ok", [window.counts.fields, scores]]
            case ["points", model, version, view, span, step]:
                points = store.points((model, version), view, Span(*span), step)
                return ["ok", [[start, *counts.fields] for start, counts in points]]
            case ["events", model, version, limit]:
                return ["ok", store.events((model, version), limit)]
            case ["ping"]:
                store.ping()
                return ["ok", None]
        raise ValueError(f"unknown request {request!r}")
    except Exception as error:
        return _failure(error)


def _failure(error: Exception) -> list[object]:
    """The answer for a failed request: a commit whose end is unknown, the store's own
    trouble, or a bug (logged here, with its traceback, to the server's log)."""
    detail = f"{type(error).__name__}: {error}"
    if isinstance(error, StoreLost):
        return ["error", "lost", detail]
    if unavailable(error):
        return ["error", "unavailable", detail]
    log.error("a store request failed: %s", detail, exc_info=error)
    return ["error", "internal", detail]


# SQLite's result codes for trouble outside the program; its other errors (SQLITE_ERROR: a
# syntax error, a missing table, too many parameters) are bugs, not a store to wait for.
_SQLITE_TROUBLE = frozenset(
    (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_READONLY,
     sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN,
     sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_PERM)
)  # fmt: skip


def unavailable(error: Exception) -> bool:
    """Whether the error is the store's own trouble (a 503 to retry), not a bug (a 500)."""
    if isinstance(error, sqlite3.DatabaseError):
        return getattr(error, "sqlite_errorcode", 0) & 0xFF in _SQLITE_TROUBLE
    return isinstance(error, OSError | psycopg.OperationalError)


def _answer(store: Store, requests: list[list[Any]]) -> list[list[object]]:
    """Answers in order; each run of consecutive writes shares one transaction."""
    answers: list[list[object]] = []
    writes: list[list[Any]] = []
    for request in [*requests, ["end"]]:
        if request[0] == "write":
            writes.append(request[1])
            continue
        if writes:
            answers += _write_all(store, writes)
            writes = []
        if request[0] != "end":
            answers.append(_answer_one(store, request))
    return answers


def open_store(data_dir: Path, url: str) -> Store:
    """The PostgreSQL store at ``url`` if given, else the SQLite one under ``data_dir``."""
    if url:
        from feedback_monitor.store.postgres import PostgresStore  # only the child needs it

        return PostgresStore(url)
    return SQLiteStore(data_dir)


def serve(store: Store, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """The child's loop: answer what has arrived, until stdin closes."""
    for lines in _available_lines(stdin):
        answers = _answer(store, [_decode(line) for line in lines])
        stdout.write(b"".join(_encode(answer) + b"\n" for answer in answers))
        stdout.flush()
    store.close()


if __name__ == "__main__":
    # Every line on the stderr we share with the server is a record in its format (JSON lines
    # for log shippers), a warning's or a traceback's too; named as imported, not "__main__".
    logs.configure_from(os.environ)
    logging.captureWarnings(True)
    log = logging.getLogger("feedback_monitor.store.child")
    # The server decides when to stop: it closes our stdin after its last request.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    url = os.environ.get(STORE_VARIABLE, "")
    try:
        serve(open_store(Path(sys.argv[1]), url), sys.stdin.buffer, sys.stdout.buffer)
    except Exception as error:
        log.exception("the store process failed: %s: %s", type(error).__name__, error)
        sys.exit(1)
