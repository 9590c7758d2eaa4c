"""Where the truth is kept: the Store protocol that every backend implements."""

from collections.abc import Awaitable, Mapping
from typing import Protocol

from feedback_monitor.confusion import Counts

Series = tuple[str, str]
"""A (model, version) pair: one confusion matrix."""


class Store(Protocol):
    """Durable confusion counts per series. Called from one writer thread only."""

    def load(self) -> dict[Series, Counts]:
        """The committed counts of every series."""

    def commit(self, deltas: Mapping[Series, Counts]) -> dict[Series, Counts]:
        """Add ``deltas`` in one durable transaction; return the totals it produced."""

    def ping(self) -> None:
        """Return if the store answers; raise otherwise."""

    def close(self) -> None:
        """Release the store; later calls are errors."""


class AsyncStore(Protocol):
    """The Store as the event loop uses it: the same calls, awaited, one at a time."""

    async def load(self) -> dict[Series, Counts]: ...

    def commit(self, deltas: Mapping[Series, Counts]) -> Awaitable[dict[Series, Counts]]:
        """May return a plain future: the recorder waits on it without a task."""

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


__all__ = ["AsyncStore", "Series", "Store"]
