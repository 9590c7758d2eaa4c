"""What the integration tests share: starting servers, scraping /metrics, polling conditions."""

import asyncio
import collections
import contextlib
import os
import random
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import uvicorn
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp

from feedback_monitor.cli import server_stack
from feedback_monitor.settings import Settings
from feedback_monitor.store import (
    Accepted,
    DriftEvent,
    Entry,
    Point,
    Refused,
    Series,
    Totals,
    Window,
)
from feedback_monitor.store.sqlite import SQLiteStore
from feedback_monitor.testing import ServiceProcess
from feedback_monitor.windows import Span, TimeView

CELLS: Mapping[str, tuple[int, int]] = {"tp": (1, 1), "tn": (0, 0), "fp": (1, 0), "fn": (0, 1)}
"""Each confusion cell and the (prediction, actual) that lands in it."""

COUNTERS: Mapping[str, str] = {
    "tp": "true_positives_total",
    "tn": "true_negatives_total",
    "fp": "false_positives_total",
    "fn": "false_negatives_total",
}
GAUGES = ("accuracy", "precision", "recall", "f1_score")
SEED_METRICS = (*COUNTERS.values(), *GAUGES)

Labels = tuple[tuple[str, str], ...]
Samples = dict[tuple[str, Labels], float]


def feedback(cell: str) -> dict[str, int]:
    prediction, actual = CELLS[cell]
    return {"prediction": prediction, "actual": actual}


def parse_samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def parse_openmetrics_samples(text: str) -> Samples:
    """Every sample of an OpenMetrics exposition, by name and sorted labels."""
    families = openmetrics_families(text)  # type: ignore[no-untyped-call]
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families
        for sample in family.samples
    }


def scrape(client: httpx.Client) -> Samples:
    """The samples on ``/metrics`` of the server ``client`` talks to."""
    response = client.get("/metrics")
    response.raise_for_status()
    return parse_samples(response.text)


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def cell_counts(samples: Samples) -> dict[str, int]:
    """The four confusion counters, summed over every series (absent reads as 0)."""
    return {cell: int(total(samples, name)) for cell, name in COUNTERS.items()}


def seed_samples(samples: Samples) -> Samples:
    """Only the seed's counters and gauges."""
    return {key: value for key, value in samples.items() if key[0] in SEED_METRICS}


def wait_until(
    condition: Callable[[], bool], timeout: float = 30.0, what: str = "", every: float = 0.01
) -> None:
    """Poll ``condition`` every ``every`` seconds until it holds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout} s: {what or condition}")
        time.sleep(every)  # polling a condition, with a deadline


def port_refuses(port: int) -> bool:
    """Whether nothing listens on the loopback ``port`` any more."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@contextlib.contextmanager
def running(service: ServiceProcess) -> Iterator[ServiceProcess]:
    """``service`` started, and killed at the end if it still runs (even if it never got ready)."""
    try:
        service.start()
        yield service
    finally:
        service.__exit__(None, None, None)


@contextlib.contextmanager
def serving(data_dir: Path, *args: str, log_path: Path) -> Iterator[ServiceProcess]:
    """A real ``feedback-monitor serve`` process on ``data_dir``, logging to ``log_path``."""
    with open(log_path, "ab") as log, running(ServiceProcess(data_dir, *args, log=log)) as service:
        yield service


@contextlib.contextmanager
def client_of(root: Path, *args: str) -> Iterator[httpx.Client]:
    """A client of a real server on ``root / "data"``, logging to ``root / "service.log"``."""
    with (
        serving(root / "data", *args, log_path=root / "service.log") as service,
        httpx.Client(base_url=service.url, timeout=30.0) as http,
    ):
        yield http


def stop(service: ServiceProcess, how: str) -> None:
    """``kill`` (SIGKILL, as in a crash) or ``terminate`` (SIGTERM, the graceful shutdown)."""
    if how == "kill":
        service.kill()
    else:
        service.terminate()


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant of it (the service may run its store in a child)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(current := todo.pop())
        todo.extend(parents.get(current, []))
    return tree


def refuse_writes(service: ServiceProcess) -> None:
    """From now on every write to a file fails (EFBIG), as on a full disk."""
    for pid in process_tree(service.pid):  # the store may write from a child process
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))


class LocalStore:
    """A real SQLiteStore called straight from the event loop, whose writes can be made to fail.

    For an in-process server: ``failing_commit`` makes every write raise, as a bug or a broken
    disk would; closing ``sqlite`` makes every call fail for real.
    """

    def __init__(self, data_dir: Path) -> None:
        self.sqlite = SQLiteStore(data_dir)
        self.failing_commit = threading.Event()

    async def load(self) -> Totals:
        return self.sqlite.load()

    async def write(self, entries: Sequence[Entry]) -> tuple[list[Accepted | Refused], Totals]:
        if self.failing_commit.is_set():
            raise OSError("the store is on fire")
        return self.sqlite.write(entries, time.time())

    async def expire(self, before: float, cutoffs: Mapping[int, float] | None = None) -> Totals:
        return self.sqlite.expire(before, cutoffs)

    async def window(self, series: Series, view: TimeView, spans: Sequence[Span]) -> Window:
        return self.sqlite.window(series, view, spans)

    async def points(self, series: Series, view: TimeView, span: Span, step: int) -> list[Point]:
        return self.sqlite.points(series, view, span, step)

    async def events(self, series: Series, limit: int) -> list[DriftEvent]:
        return self.sqlite.events(series, limit)

    async def ping(self) -> None:
        self.sqlite.ping()

    async def close(self) -> None:
        self.sqlite.close()


class InProcessServer:
    """An ASGI app under a real uvicorn with the service's server stack, on a loopback port, in a
    thread: for failures a separate process cannot be made to have (``create_app`` with a store
    handed in by the test), and for the server protocol's own tests."""

    def __init__(self, app: ASGIApp, **config: Any) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        stack = server_stack(Settings.model_fields["header_timeout"].default)
        self.server = uvicorn.Server(uvicorn.Config(app, log_config=None, **{**stack, **config}))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, name="uvicorn"
        )

    def __enter__(self) -> Self:
        self.thread.start()
        try:
            wait_until(
                lambda: self.server.started or not self.thread.is_alive(), what="server start"
            )
            if not self.server.started:
                raise RuntimeError("in-process server did not start")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30.0)
        self.socket.close()


class PipeLog:
    """A pipe to hand a service as its log, drained by a thread into ``text``.

    For a service whose file writes are made to fail: a pipe is not subject to RLIMIT_FSIZE.
    """

    def __init__(self) -> None:
        read, write = os.pipe()
        self.reader = os.fdopen(read, "rb")
        self.writer = os.fdopen(write, "wb")
        self.chunks: list[bytes] = []
        self.thread = threading.Thread(target=self._drain, name="pipe-log")

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode()

    def _drain(self) -> None:
        while chunk := self.reader.read1(65536):
            self.chunks.append(chunk)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def close_writer(self) -> None:
        """Once the service holds its copy, so that its exit ends the pipe."""
        self.writer.close()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.writer.close()
        self.thread.join(timeout=30.0)
        self.reader.close()


class RawHTTP:
    """One keep-alive HTTP/1.1 connection over asyncio streams, for many concurrent clients.

    httpx's async pool slows to ~100 requests/s at 64 connections here; this stays out of the
    way of the server being measured.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, url: str) -> "RawHTTP":
        host, port = url.removeprefix("http://").rsplit(":", 1)
        return cls(*await asyncio.open_connection(host, int(port)))

    async def post_json(self, path: str, body: bytes) -> tuple[int, bytes]:
        """The status and body of one ``POST`` of ``body`` as application/json."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        await self.writer.drain()
        status_line, *header_lines = (await self.reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
        headers = dict(
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(b":") for line in header_lines if line)
        )
        if b"content-length" in headers:
            return int(status_line.split()[1]), await self.reader.readexactly(
                int(headers[b"content-length"])
            )
        return int(status_line.split()[1]), await self._chunked()

    async def _chunked(self) -> bytes:
        body = b""
        while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += await self.reader.readexactly(size)
            await self.reader.readexactly(2)
        await self.reader.readuntil(b"\r\n")  # the empty trailer
        return body

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


class Load:
    """Client threads posting feedback of a known mix until stopped or the server goes away.

    ``attempted`` counts every request before it is sent, ``acknowledged`` every 200;
    ``unexpected`` keeps any other answer. A thread stops at its first transport error.
    """

    def __init__(self, url: str, threads: int = 8, seed: int = 0) -> None:
        self.url = url
        self.attempted: collections.Counter[str] = collections.Counter()
        self.acknowledged: collections.Counter[str] = collections.Counter()
        self.unexpected: list[tuple[int, str]] = []
        self.errors: list[httpx.TransportError] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(random.Random(seed * 1000 + n),))
            for n in range(threads)
        ]

    def _run(self, rng: random.Random) -> None:
        cells, weights = list(CELLS), [4, 3, 2, 1]
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            while not self.stopping.is_set():
                cell = rng.choices(cells, weights)[0]
                with self.lock:
                    self.attempted[cell] += 1
                try:
                    response = client.post("/feedback", json=feedback(cell))
                except httpx.TransportError as error:
                    with self.lock:
                        self.errors.append(error)
                    return
                with self.lock:
                    if response.status_code == 200:
                        self.acknowledged[cell] += 1
                    else:
                        self.unexpected.append((response.status_code, response.text))

    def acks(self) -> int:
        with self.lock:
            return self.acknowledged.total()

    def wait_for_acks(self, count: int, timeout: float = 60.0) -> None:
        wait_until(lambda: self.acks() >= count, timeout, f"{count} acknowledged feedback")

    def __enter__(self) -> Self:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60.0)
