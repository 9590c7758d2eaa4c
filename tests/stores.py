"""An in-process AsyncStore for unit tests: a sync Store driven from one worker thread."""

import asyncio
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from feedback_monitor.confusion import Counts
from feedback_monitor.store import Series, Store

T = TypeVar("T")


class ThreadedStore:
    """Every call runs on one dedicated thread, so the event loop keeps queueing meanwhile."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-store")

    async def _call(self, function: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, function, *args)

    async def load(self) -> dict[Series, Counts]:
        return await self._call(self.store.load)

    async def commit(self, deltas: Mapping[Series, Counts]) -> dict[Series, Counts]:
        return await self._call(self.store.commit, deltas)

    async def ping(self) -> None:
        await self._call(self.store.ping)

    async def close(self) -> None:
        try:
            await self._call(self.store.close)
        finally:
            self._thread.shutdown()
