"""Where the truth is kept: the Store protocol and the shapes of what goes in and comes out."""

from collections.abc import Awaitable, Mapping, Sequence
from typing import NamedTuple, Protocol

from feedback_monitor.confusion import Counts
from feedback_monitor.records import Feedback, Prediction
from feedback_monitor.scores import ScoreHistogram
from feedback_monitor.series import Series, SeriesState
from feedback_monitor.windows import Span, TimeView


class Entry(NamedTuple):
    """One request's writes: counts of its id-less feedback, and its items that have an id
    (with their index in the request), applied all or nothing. An entry that may create series
    carries the ``cap`` on their number, and the index of the first counted item of each
    series in ``deltas`` (``firsts``, in order): it is refused (422, reason ``series_cap``) at
    its first item that would create a series past the cap."""

    deltas: dict[Series, Counts]
    keyed: list[tuple[int, Feedback | Prediction]]
    cap: int | None = None
    firsts: tuple[tuple[int, Series], ...] = ()

    def counted(self) -> "Accepted":
        """The outcome of the deltas: every one counted, nothing to refuse."""
        return Accepted(sum(d.total for d in self.deltas.values()), 0, sorted(self.deltas))


class Accepted(NamedTuple):
    """An entry applied: how many items counted, how many were repeats, the series touched."""

    accepted: int
    duplicates: int
    series: list[Series]


class Refused(NamedTuple):
    """An entry refused whole, because of its item at index ``at``."""

    status: int
    message: str
    reason: str
    at: int


class Window(NamedTuple):
    """What the buckets of a window hold in one time view."""

    counts: Counts
    scores: ScoreHistogram | None


Point = tuple[int, Counts]
"""The start of a step, and the counts in it."""


class DriftEvent(NamedTuple):
    """A drift a detector found: which, when (Unix seconds), and its statistic."""

    detector: str
    at: float
    statistic: float


Totals = dict[Series, SeriesState]
"""The state of every series a transaction touched, right after it."""


class Store(Protocol):
    """The durable state. Called from one writer only."""

    def load(self) -> Totals:
        """Every series."""

    def write(
        self, entries: Sequence[Entry], now: float
    ) -> tuple[list[Accepted | Refused], Totals]:
        """Apply the entries in one durable transaction; each is applied whole or refused."""

    def expire(self, before: float, cutoffs: Mapping[int, float] | None = None) -> Totals:
        """Drop predictions stored before ``before`` and still unlabelled, and older ids; and
        the time buckets of each resolution that start before its cutoff."""

    def window(self, series: Series, view: TimeView, spans: Sequence[Span]) -> Window:
        """The sum of the buckets of the spans."""

    def points(self, series: Series, view: TimeView, span: Span, step: int) -> list[Point]:
        """The counts of each ``step`` seconds of the span that has any."""

    def events(self, series: Series, limit: int) -> list[DriftEvent]:
        """The latest drifts found in the series, newest first."""

    def ping(self) -> None:
        """Return if the store takes writes; raise otherwise."""

    def close(self) -> None:
        """Release the store; later calls are errors."""


class AsyncStore(Protocol):
    """The Store as the event loop uses it. ``write`` may return a plain future."""

    async def load(self) -> Totals: ...

    def write(self, entries: Sequence[Entry]) -> Awaitable[tuple[list[Accepted | Refused], Totals]]:
        """Stamped with the writer's clock: the time of the commit."""

    async def expire(self, before: float, cutoffs: Mapping[int, float] | None = None) -> Totals: ...

    async def window(self, series: Series, view: TimeView, spans: Sequence[Span]) -> Window: ...

    async def points(
        self, series: Series, view: TimeView, span: Span, step: int
    ) -> list[Point]: ...

    async def events(self, series: Series, limit: int) -> list[DriftEvent]: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


__all__ = [
    "Accepted",
    "AsyncStore",
    "DriftEvent",
    "Entry",
    "Point",
    "Refused",
    "Series",
    "Store",
    "Totals",
    "Window",
]
