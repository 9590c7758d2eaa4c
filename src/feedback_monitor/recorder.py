"""The single writer: requests hand it feedback and await the commit (group commit).

Whatever is waiting when the writer becomes free goes into one transaction, so one fsync serves
every request that arrived during the previous commit. After each commit the snapshot is updated
by the totals the store returned: reads never touch the disk and never see uncommitted counts.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

from feedback_monitor.confusion import Counts
from feedback_monitor.errors import Unavailable
from feedback_monitor.records import Feedback
from feedback_monitor.store import AsyncStore, Series

log = logging.getLogger(__name__)

_Waiter = tuple[Feedback, "asyncio.Future[Counts]"]


class RecorderClosed(Unavailable):
    """Feedback handed to a recorder that is shutting down."""

    def __init__(self) -> None:
        super().__init__("Service is shutting down", "shutting_down")


def tally(batch: list[_Waiter]) -> dict[Series, Counts]:
    """The confusion counts each series gains from a batch."""
    deltas: dict[Series, Counts] = {}
    for feedback, _ in batch:
        deltas[feedback.series] = deltas.get(feedback.series, Counts()).add(
            feedback.prediction, feedback.actual
        )
    return deltas


class Recorder:
    """Owns every write to the store; one store call at a time."""

    def __init__(
        self,
        store: AsyncStore,
        on_commit: Callable[[int, float], None] = lambda size, seconds: None,
    ) -> None:
        self._store = store
        self._on_commit = on_commit
        self._waiting: list[_Waiter] = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._counts: dict[Series, Counts] = {}

    @property
    def snapshot(self) -> Mapping[Series, Counts]:
        """Committed counts per series, as of the last commit (a read-only view)."""
        return MappingProxyType(self._counts)

    async def start(self) -> None:
        self._counts = await self._store.load()
        self._task = asyncio.create_task(self._write_loop(), name="recorder")

    async def record(self, feedback: Feedback) -> Counts:
        """Commit one feedback; return its series' totals right after the commit that held it."""
        if self._closing:
            raise RecorderClosed
        future: asyncio.Future[Counts] = asyncio.get_running_loop().create_future()
        self._waiting.append((feedback, future))
        self._wakeup.set()
        return await future

    async def ping(self) -> None:
        await self._store.ping()

    async def close(self) -> None:
        """Commit and answer everything already handed in, then release the store."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        await self._store.close()

    async def _write_loop(self) -> None:
        while not (self._closing and not self._waiting):
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._waiting = self._waiting, []
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[_Waiter]) -> None:
        start = time.perf_counter()
        try:
            totals = await self._store.commit(tally(batch))
        except Exception as error:  # the requests report it; the writer lives on
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        self._counts.update(totals)  # only this event loop reads or writes it
        self._on_commit(len(batch), time.perf_counter() - start)
        for feedback, future in batch:
            if not future.done():  # a client that went away may have cancelled it
                future.set_result(totals[feedback.series])
