"""Stores for unit tests: a sync Store driven from one worker thread, and wrappers around it."""

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from feedback_monitor.confusion import Counts
from feedback_monitor.errors import StoreBug, StoreLost
from feedback_monitor.store import (
    Accepted,
    AsyncStore,
    DriftEvent,
    Entry,
    Point,
    Refused,
    Series,
    Store,
    Totals,
    Window,
)
from feedback_monitor.store.sql import SQLStore
from feedback_monitor.store.sqlite import SQLiteStore
from feedback_monitor.windows import HOUR, MINUTE, Span, TimeView

T = TypeVar("T")
WriteAnswer = tuple[list[Accepted | Refused], Totals]
WAIT = 10.0  # seconds; a deadline for conditions, never a pause


class ThreadedStore:
    """Every call runs on one dedicated thread, so the event loop keeps queueing meanwhile.

    ``clock`` stamps each write, read on the store's thread as the child store reads its own.
    """

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-store")

    def _call(self, function: Callable[..., T], *args: object) -> "asyncio.Future[T]":
        return asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    async def load(self) -> Totals:
        return await self._call(self.store.load)

    def write(self, entries: Sequence[Entry]) -> "asyncio.Future[WriteAnswer]":
        return self._call(lambda: self.store.write(list(entries), self.clock()))

    async def expire(self, before: float, cutoffs: Mapping[int, float] | None = None) -> Totals:
        return await self._call(self.store.expire, before, cutoffs)

    async def window(self, series: Series, view: TimeView, spans: Sequence[Span]) -> Window:
        return await self._call(self.store.window, series, view, spans)

    async def points(self, series: Series, view: TimeView, span: Span, step: int) -> list[Point]:
        return await self._call(self.store.points, series, view, span, step)

    async def events(self, series: Series, limit: int) -> list[DriftEvent]:
        return await self._call(self.store.events, series, limit)

    async def ping(self) -> None:
        await self._call(self.store.ping)

    async def close(self) -> None:
        try:
            await self._call(self.store.close)
        finally:
            self._thread.shutdown()


class StoreDown(Exception):
    """The error a broken store raises."""


class GatedStore:
    """A real SQLiteStore whose writes can be held at a gate or made to fail."""

    def __init__(self, data_dir: Path) -> None:
        self.inner = SQLiteStore(data_dir)
        self.failing = False
        self.poison: str | None = None  # an id whose every write fails, as on a bug
        self.losing = False  # each write commits, then its answer is lost with the process
        self.misread = False  # each write commits, then reading its answer fails on a bug
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def load(self) -> Totals:
        return self.inner.load()

    def write(self, entries: Sequence[Entry], now: float) -> WriteAnswer:
        self.entered.set()
        assert self.gate.wait(WAIT)
        if self.failing:
            raise StoreDown("disk on fire")
        named = {item.id for entry in entries for _, item in entry.keyed}
        if self.poison is not None and self.poison in named:
            raise StoreBug(f"a bug the id {self.poison!r} sets off")
        answer = self.inner.write(entries, now)
        if self.losing:
            raise StoreLost("store process exited with -9")
        if self.misread:
            raise KeyError("a bug reading the answer")
        return answer

    def expire(self, before: float, cutoffs: Mapping[int, float] | None = None) -> Totals:
        totals = self.inner.expire(before, cutoffs)
        if self.misread:
            raise KeyError("a bug reading the answer")
        return totals

    def window(self, series: Series, view: TimeView, spans: Sequence[Span]) -> Window:
        return self.inner.window(series, view, spans)

    def points(self, series: Series, view: TimeView, span: Span, step: int) -> list[Point]:
        return self.inner.points(series, view, span, step)

    def events(self, series: Series, limit: int) -> list[DriftEvent]:
        return self.inner.events(series, limit)

    def ping(self) -> None:
        self.inner.ping()

    def close(self) -> None:
        self.inner.close()


def items(entry: Entry) -> int:
    """How many records an entry carries."""
    return sum(delta.total for delta in entry.deltas.values()) + len(entry.keyed)


class Sized:
    """An AsyncStore that notes the record count of every successful write request."""

    def __init__(self, inner: AsyncStore, sizes: list[int]) -> None:
        self.inner = inner
        self.sizes = sizes

    async def load(self) -> Totals:
        return await self.inner.load()

    async def write(self, entries: Sequence[Entry]) -> WriteAnswer:
        answer = await self.inner.write(entries)
        self.sizes.append(sum(items(entry) for entry in entries))
        return answer

    async def expire(self, before: float, cutoffs: Mapping[int, float] | None = None) -> Totals:
        return await self.inner.expire(before, cutoffs)

    async def window(self, series: Series, view: TimeView, spans: Sequence[Span]) -> Window:
        return await self.inner.window(series, view, spans)

    async def points(self, series: Series, view: TimeView, span: Span, step: int) -> list[Point]:
        return await self.inner.points(series, view, span, step)

    async def events(self, series: Series, limit: int) -> list[DriftEvent]:
        return await self.inner.events(series, limit)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


def check_migrated(store: SQLStore, series: Series, start: int, view: TimeView) -> None:
    """What a first-schema database holds after migration (both stores' migration tests fill
    it alike): counts, predictions, label delays, detections, a minute bucket; then a commit."""
    loaded = store.load()[series]
    assert (loaded.counts, loaded.predicted, loaded.labelled, loaded.expired) == (
        Counts(1, 2, 3, 4), 5, 4, 1)  # fmt: skip
    assert (loaded.delay_sum, loaded.delays[2]) == (9.5, 4)
    detections = {s.detector: s.detections for s in loaded.drift}
    assert detections == {"adwin": 2, "ddm": 1} | dict.fromkeys(
        ("page_hinkley", "prediction_rate", "prevalence"), 0
    )
    span = Span(start, start + HOUR, MINUTE)
    assert store.window(series, view, [span]).counts == Counts(1, 2, 3, 4)
    assert store.commit({series: Counts(tp=1)})[series].counts == Counts(2, 2, 3, 4)
