"""The write path: requests hand it feedback and await the durable commit that holds it.

After each commit the snapshot is updated by the totals the store returned: reads never touch
the disk and never see uncommitted counts.
"""

import asyncio
import functools
from collections.abc import Mapping
from types import MappingProxyType

from feedback_monitor.confusion import Counts
from feedback_monitor.errors import Unavailable
from feedback_monitor.records import Feedback
from feedback_monitor.store import AsyncStore, Series

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
    """Owns every write: hands the store each loop iteration's feedback as one request.

    It never waits for one commit before sending the next request: the store's writer merges
    whatever has arrived while it was busy into its next transaction (group commit). Answers
    come back in order, so the snapshot only ever moves forward.
    """

    def __init__(self, store: AsyncStore) -> None:
        self._store = store
        self._pending: list[_Waiter] = []
        self._in_flight: set[asyncio.Future[dict[Series, Counts]]] = set()
        self._closing = False
        self._counts: dict[Series, Counts] = {}

    @property
    def snapshot(self) -> Mapping[Series, Counts]:
        """Committed counts per series, as of the last commit (a read-only view)."""
        return MappingProxyType(self._counts)

    async def start(self) -> None:
        self._counts = await self._store.load()

    async def record(self, feedback: Feedback) -> Counts:
        """Commit one feedback; return its series' totals right after the commit that held it."""
        if self._closing:
            raise RecorderClosed
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Counts] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)  # after every request already readable has joined
        self._pending.append((feedback, future))
        return await future

    async def ping(self) -> None:
        await self._store.ping()

    async def close(self) -> None:
        """Commit and answer everything already handed in, then release the store."""
        self._closing = True
        self._flush()
        while self._in_flight:
            await asyncio.wait(set(self._in_flight))
        await self._store.close()

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        commit: asyncio.Future[dict[Series, Counts]]
        try:
            commit = asyncio.ensure_future(self._store.commit(tally(batch)))
        except Exception as error:  # no request may be left waiting for an answer
            commit = asyncio.get_running_loop().create_future()
            commit.set_exception(error)
        self._in_flight.add(commit)
        commit.add_done_callback(functools.partial(self._committed, batch))

    def _committed(
        self, batch: list[_Waiter], commit: "asyncio.Future[dict[Series, Counts]]"
    ) -> None:
        self._in_flight.discard(commit)
        error = RecorderClosed() if commit.cancelled() else commit.exception()
        if error is not None:
            for _, future in batch:  # the requests report it; the recorder lives on
                if not future.done():
                    future.set_exception(error)
            return
        totals = commit.result()
        self._counts.update(totals)  # only this event loop reads or writes it
        for feedback, future in batch:
            if not future.done():  # a client that went away may have cancelled it
                future.set_result(totals[feedback.series])
