"""The write path: requests hand it records and await the durable commit that holds them.

Group commit: one write is in flight at a time, and everything handed in meanwhile goes to the
store as the next write, one transaction, as soon as the previous one is answered. So the
busier the service, the more requests share one fsync, whose cost (mostly the kernel's) is the
same for one request or a hundred. After each answer the snapshot takes the totals the store
returned, so reads never touch the disk and never see uncommitted state.

With a store shared by several replicas, the totals of a commit are global, but a series this
replica does not write to would stay as it was: ``refresh`` reloads every series that often.

A write that fails on a bug (the store's transaction stored nothing of it) goes again in
halves, and so on: the request that sets the bug off fails alone, not every other in its group.

A store that does not answer a write within ``write_timeout`` (a disk or database that hangs)
does not hold its requests, nor those queued behind it, for as long: a watchdog answers them 503,
the first saying that their write may still be stored.

The cap on series: a request that may create series goes to the store with the cap, and the
store, which sees every writer's series, refuses it at its first item past the cap. A request
that certainly passes it is refused at once where the store's answer is known (``_entry``).
"""

import asyncio
import collections
import contextlib
import functools
import logging
import operator
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from feedback_monitor.confusion import CELL, Counts, cells
from feedback_monitor.errors import ClientError, StoreBug, StoreError, StoreLost, Unavailable
from feedback_monitor.records import Feedback, FeedbackBatch, Prediction, plain
from feedback_monitor.series import SeriesState
from feedback_monitor.store import Accepted, AsyncStore, Entry, Refused, Series, Totals
from feedback_monitor.windows import Retention

log = logging.getLogger(__name__)

Record = Feedback | Prediction
_Waiter = tuple[Entry, "asyncio.Future[Accepted]", bool]  # and whether it is a batch
_Counted = tuple[Accepted, "asyncio.Future[Any]"]  # the outcome is known: all of it counted
_Write = tuple[list[Entry], list[_Counted], list[_Waiter]]  # as ``Recorder._send`` takes it


class RecorderClosed(Unavailable):
    """Records handed to a recorder that is shutting down."""

    def __init__(self) -> None:
        super().__init__("Service is shutting down", "shutting_down")


class StoreTimedOut(Unavailable):
    """A write the store did not answer in time: it may still be committed."""

    def __init__(self, seconds: float) -> None:
        message = f"Store did not answer within {seconds:g} s: the write may still be stored"
        super().__init__(message, "store_timeout")


class WriteLost(Unavailable):
    """A write whose end is unknown (``StoreLost``): it may have been committed."""

    def __init__(self) -> None:
        message = "Store lost during the write: the write may still be stored"
        super().__init__(message, "store_lost")


class Refusal(ClientError):
    """A request the store refused whole (unknown id, conflict), naming the item at fault."""

    def __init__(self, refused: Refused, batch: bool) -> None:
        super().__init__(
            refused.status, refused.message, refused.reason, refused.at if batch else None
        )


def entry(records: Sequence[Record] | FeedbackBatch, cap: int | None = None) -> Entry:
    """Counts of the plain feedback, and the other records with their index; under a cap on
    the series it may create, the index of the first counted item of each series too."""
    if isinstance(records, FeedbackBatch):
        written = Entry(cells(records.counted), list[tuple[int, Record]](records.keyed))
    else:
        counted, keyed = _count(records)
        written = Entry(cells(counted), keyed)
    if cap is None:
        return written
    kept = {index for index, _ in written.keyed}
    firsts: dict[Series, int] = {}
    for index, series in enumerate(_named(records)):
        if index not in kept:
            firsts.setdefault(series, index)
    return written._replace(cap=cap, firsts=tuple((i, s) for s, i in firsts.items()))


def _count(
    records: Sequence[Record],
) -> tuple[dict[tuple[str, str, int, int], int], list[tuple[int, Record]]]:
    counted: dict[tuple[str, str, int, int], int] = {}
    keyed: list[tuple[int, Record]] = []
    for index, r in enumerate(records):
        if isinstance(r, Feedback) and (prediction := plain(r)) is not None:
            key = (r.model, r.version, prediction, r.actual)
            counted[key] = counted.get(key, 0) + 1
        else:
            keyed.append((index, r))
    return counted, keyed


def _creates(record: Record) -> bool | None:
    """Whether the record creates its series if it is new: True for certain; False for feedback
    with an id and a prediction, which joins the prediction stored under its id if there is
    one, and creates nothing then; None for a label, which names its series only once joined."""
    if record.prediction is None:
        return None
    return isinstance(record, Prediction) or record.id is None


def created_series(records: Sequence[Record] | FeedbackBatch) -> tuple[set[Series], set[Series]]:
    """The series the records create if they are new: for certain, and unless joins."""
    if isinstance(records, FeedbackBatch):  # its counted items create their series for certain
        sure = {(m, v) for m, v, _, _ in records.counted}
        items: Iterable[Record] = [f for _, f in records.keyed]
    else:
        sure, items = set(), records
    maybe: set[Series] = set()
    for r in items:
        if (certain := _creates(r)) is not None:
            (sure if certain else maybe).add(r.series)
    return sure, maybe


class Recorder:
    """Owns every write; refuses at once what certainly passes the cap on series."""

    def __init__(
        self,
        store: AsyncStore,
        max_series: int = 1000,
        refresh: float | None = None,
        write_timeout: float | None = None,
    ) -> None:
        self._store = store
        self._max_series = max_series
        self._refresh = refresh
        self._write_timeout = write_timeout
        self._refreshing: asyncio.Task[None] | None = None
        self._reloading: asyncio.Task[None] | None = None  # after a store process was lost
        self._watching: asyncio.Task[None] | None = None
        # Waiting for the next write: the counts of what is only counted, summed as it arrives
        # (one entry will carry them all), and the entries with items kept whole.
        self._counts: dict[Series, list[int]] = {}
        self._counted: list[_Counted] = []
        self._kept: list[_Waiter] = []
        self._in_flight: asyncio.Future[tuple[list[Accepted | Refused], Totals]] | None = None
        self._sending: tuple[list[_Counted], list[_Waiter]] = ([], [])  # the write in flight's
        # The parts of a write that failed on a bug, each to go again (``_split``), first.
        self._alone: collections.deque[_Write] = collections.deque()
        self._sent_at = 0.0  # when it went, on the event loop's clock
        self._committed_at: float | None = None  # the last write answered, if it committed
        self._closing = False
        self._states: dict[Series, SeriesState] = {}
        self._ones: dict[Series, Accepted] = {}  # bounded by the cap on series

    @property
    def snapshot(self) -> Mapping[Series, SeriesState]:
        """Committed state per series, as of the last commit (a read-only view)."""
        return MappingProxyType(self._states)

    def state(self, series: Series) -> SeriesState:
        """The committed state of a series (``snapshot[series]`` without a view per call)."""
        return self._states[series]

    async def start(self) -> None:
        self._states = await self._store.load()
        if self._refresh is not None:
            self._refreshing = asyncio.create_task(self._reload(self._refresh))
        if self._write_timeout is not None:
            self._watching = asyncio.create_task(self._watch(self._write_timeout))

    async def _watch(self, timeout: float) -> None:
        """Answer 503 to the requests of a write the store has left unanswered for ``timeout``
        seconds, and to those queued behind it (never sent: not stored), each second it lasts."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, timeout / 2))
            if self._in_flight is not None and loop.time() - self._sent_at > timeout:
                self._give_up(timeout)

    def _give_up(self, timeout: float) -> None:
        """503 for the requests of the write in flight, which may still be stored, and for
        those queued behind it, which are not."""
        sent, self._sending = _futures(*self._sending), ([], [])
        queued = _futures(self._counted, self._kept)
        queued += [f for _, counted, kept in self._alone for f in _futures(counted, kept)]
        self._counted, self._kept, self._counts = [], [], {}
        self._alone.clear()
        if sent:
            log.error("the store has not answered a write for %g s", timeout)
        # Fresh errors each time: a raised one keeps the frames it passed through.
        _fail(sent, StoreTimedOut(timeout))
        _fail(queued, StoreError(f"queued behind a write unanswered for {timeout:g} s"))

    async def _reload(self, every: float) -> None:
        """What other replicas committed, into the snapshot; the store answers in order, so a
        reload never overtakes the totals of a commit answered after it."""
        while True:
            await asyncio.sleep(every)
            try:
                self._states.update(await self._store.load())
            except Unavailable:  # the store is down: the requests report it, not this loop
                log.debug("reloading the series failed", exc_info=True)
                self._committed_at = None  # and /ready, without waiting for a write to fail

    def _load_again(self) -> None:
        """Every series from the store, into the snapshot, as soon as it answers again."""
        if not self._closing and (self._reloading is None or self._reloading.done()):
            self._reloading = asyncio.create_task(self._load_when_up())

    async def _load_when_up(self) -> None:
        while True:
            try:
                self._states.update(await self._store.load())
                return
            except Exception:  # the store still down, or a bug: try again in a second
                log.warning("reloading the series failed", exc_info=True)
                await asyncio.sleep(1.0)

    def record(self, feedback: Feedback) -> Awaitable[Accepted]:
        """Commit one feedback; its outcome once committed (``snapshot`` has its series)."""
        series = feedback.series
        if series not in self._states:
            return self.write([feedback], batch=False)  # it may create a series: under the cap
        # The hot paths: a series already stored, so no cap to check; the plain future is
        # awaited without a coroutine of ours between.
        future: asyncio.Future[Accepted] = self._queue()
        prediction = plain(feedback)
        if prediction is None:  # kept whole: an id, a score or a time
            self._kept.append((Entry({}, [(0, feedback)]), future, False))
        else:  # only counted: nothing to refuse
            self._pending_counts(series)[CELL[prediction, feedback.actual]] += 1
            self._counted.append((self._one(series), future))
        return future

    async def write(
        self, records: Sequence[Record] | FeedbackBatch, batch: bool = True
    ) -> Accepted:
        """Commit the records, all or none; raise the store's refusal as a client error."""
        return await self._submit(self._entry(records, batch), batch)

    def _entry(self, records: Sequence[Record] | FeedbackBatch, batch: bool) -> Entry:
        """The records' entry: under the cap if they may create series."""
        sure, maybe = created_series(records)
        if not (sure | maybe) - self._states.keys():
            return entry(records)
        # Series are never deleted, so the snapshot holds only series stored: past its room,
        # the store refuses too. It is refused here where the store's answer is known: the
        # snapshot must hold every series stored (the only writer's does, but for those of
        # writes in flight, which the refusal may be taken to precede; a replica's does once
        # the cap is reached), and no item before the one past the cap may have an id.
        room = self._max_series - len(self._states)
        certain = sure - self._states.keys()
        if len(certain) > room and (self._refresh is None or room <= 0):
            index = _past_the_cap(records, certain, room)
            if index is not None:
                raise SeriesCapReached(self._max_series, index if batch else None)
        return entry(records, self._max_series)

    def _submit(self, entry: Entry, batch: bool) -> "asyncio.Future[Accepted]":
        future: asyncio.Future[Accepted] = self._queue()
        if entry.keyed or entry.cap is not None:
            self._kept.append((entry, future, batch))
        else:
            for series, delta in entry.deltas.items():
                counts = self._pending_counts(series)
                counts[:] = map(operator.add, counts, delta.fields)
            self._counted.append((entry.counted(), future))
        return future

    async def expire(self, ttl: float, retention: Retention) -> None:
        """Drop what is older than the prediction TTL, and the time buckets past retention."""
        now = time.time()
        try:
            self._states.update(await self._store.expire(now - ttl, retention.cutoffs(now)))
        except Exception as error:
            if _unseen(error):
                self._load_again()
            raise

    async def ping(self) -> None:
        await self._store.ping()

    async def close(self) -> bool:
        """Commit and answer everything already handed in, then release the store; False if
        the store left a write unanswered for ``write_timeout``, which was answered 503."""
        self._closing = True
        answered = True
        for task in (self._refreshing, self._watching, self._reloading):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._flush()
        while self._in_flight is not None:  # each answer sends what waited for it
            done, _ = await asyncio.wait([self._in_flight], timeout=self._write_timeout)
            if not done and self._write_timeout is not None:  # a store that hangs: no wait
                self._give_up(self._write_timeout)  # for ever (the watchdog is gone)
                answered = False
                break
        await self._store.close()
        return answered

    def _refusal(self, refused: Refused, batch: bool) -> ClientError:
        if refused.reason == "series_cap":  # the store found a series past the cap
            return SeriesCapReached(self._max_series, refused.at if batch else None)
        return Refusal(refused, batch)

    def _one(self, series: Series) -> Accepted:
        """The outcome of one counted feedback of the series (one shared by all of them)."""
        one = self._ones.get(series)
        if one is None:
            one = self._ones[series] = Accepted(1, 0, [series])
        return one

    def _pending_counts(self, series: Series) -> list[int]:
        """The counts of the series waiting for the next write, as (tp, tn, fp, fn)."""
        counts = self._counts.get(series)
        if counts is None:
            counts = self._counts[series] = [0, 0, 0, 0]
        return counts

    def _queue(self) -> "asyncio.Future[Any]":
        """A future for the next write's answer, and that write on its way."""
        if self._closing:
            raise RecorderClosed
        loop = asyncio.get_running_loop()
        if not (self._counted or self._kept) and self._in_flight is None:
            loop.call_soon(self._flush)  # after every request already readable has joined
        return loop.create_future()

    def _flush(self) -> None:
        if self._in_flight is not None:
            return  # what waits goes when the write in flight is answered
        if self._alone:
            self._send(*self._alone.popleft())
        elif self._counted or self._kept:
            counted, kept, counts = self._counted, self._kept, self._counts
            self._counted, self._kept, self._counts = [], [], {}
            deltas = {series: Counts(*cells) for series, cells in counts.items()}
            self._send([Entry(deltas, [])] if counted else [], counted, kept)

    def _send(self, counting: list[Entry], counted: list[_Counted], kept: list[_Waiter]) -> None:
        """One write: the counts of ``counted`` in ``counting`` (one entry, or none), then each
        entry kept whole."""
        write: asyncio.Future[tuple[list[Accepted | Refused], Totals]]
        try:
            write = asyncio.ensure_future(  # noqa: RUF006 - kept in self._in_flight below
                self._store.write(counting + [e for e, _, _ in kept])
            )
        except Exception as error:  # no request may be left waiting for an answer
            write = asyncio.get_running_loop().create_future()
            unsent = StoreBug(f"the write was not sent: {error!r}")  # so nothing is stored
            unsent.__cause__ = error
            write.set_exception(unsent)
        self._in_flight = write
        self._sending, self._sent_at = (counted, kept), asyncio.get_running_loop().time()
        write.add_done_callback(functools.partial(self._written, counting, counted, kept))

    def _written(
        self,
        counting: list[Entry],
        counted: list[_Counted],
        kept: list[_Waiter],
        write: "asyncio.Future[tuple[list[Accepted | Refused], Totals]]",
    ) -> None:
        self._in_flight, self._sending = None, ([], [])
        error = RecorderClosed() if write.cancelled() else write.exception()
        self._committed_at = None if error is not None else asyncio.get_running_loop().time()
        if isinstance(error, StoreBug) and self._split(counting, counted, kept):
            return
        self._flush()  # what arrived meanwhile: the next transaction starts at once
        if error is not None and _unseen(error):
            self._load_again()
        if isinstance(error, StoreLost):
            error = WriteLost()
        if error is not None:
            _fail(_futures(counted, kept), error)  # the requests report it; the recorder lives on
            return
        outcomes, totals = write.result()
        self._states.update(totals)  # only this event loop reads or writes it
        for accepted, future in counted:
            if not future.done():
                future.set_result(accepted)
        self._answer(kept, outcomes[len(counting) :])

    def _split(self, counting: list[Entry], counted: list[_Counted], kept: list[_Waiter]) -> bool:
        """A write that failed on a bug, which stored nothing, again in two halves, each of
        which splits again if it fails: the request that sets the bug off ends up failing
        alone, after some 2 log2(n) writes, not every other request of its transaction. False
        for a write of one request (or one whose requests have all been answered)."""
        waiting = any(not future.done() for _, future in counted)  # (else the watchdog's)
        units: list[_Write] = [(counting, counted, [])] if waiting else []
        units += [([], [], [waiter]) for waiter in kept if not waiter[1].done()]
        if len(units) < 2:
            return False
        log.warning("a write of %d requests failed on a bug: sent again in halves", len(units))
        half = len(units) // 2
        for part in (units[half:], units[:half]):  # to the front, in order
            self._alone.appendleft(([e for c, _, _ in part for e in c],
                                    [f for _, c, _ in part for f in c],
                                    [w for _, _, k in part for w in k]))  # fmt: skip
        self._flush()
        return True

    def _answer(self, kept: list[_Waiter], outcomes: list[Accepted | Refused]) -> None:
        """Each entry kept whole its outcome: accepted, or refused as a client error."""
        for (_, future, batch), outcome in zip(kept, outcomes, strict=True):
            if future.done():  # a client that went away may have cancelled it
                continue
            if isinstance(outcome, Refused):
                future.set_exception(self._refusal(outcome, batch))
            else:
                future.set_result(outcome)

    @property
    def committed_at(self) -> float | None:
        """When the store answered the last write, on the event loop's clock (``loop.time()``),
        if it committed it; None if it failed (a full disk), or before the first."""
        return self._committed_at


def _futures(counted: list[_Counted], kept: list[_Waiter]) -> list["asyncio.Future[Any]"]:
    return [future for _, future in counted] + [future for _, future, _ in kept]


def _unseen(error: BaseException) -> bool:
    """Whether a call that failed so may have committed what the snapshot then lacks: its
    store process died with it in hand, or a bug came after the commit (reading its answer)."""
    return isinstance(error, StoreLost) or not isinstance(error, Unavailable | StoreBug)


def _fail(futures: Iterable["asyncio.Future[Any]"], error: BaseException) -> None:
    """The error for each request still waiting (one whose client went may be cancelled)."""
    for future in futures:
        if not future.done():
            future.set_exception(error)


def _named(records: Sequence[Record] | FeedbackBatch) -> list[Series]:
    """Each item's (model, version), in order."""
    return records.series() if isinstance(records, FeedbackBatch) else [r.series for r in records]


def _past_the_cap(
    records: Sequence[Record] | FeedbackBatch, new: set[Series], room: int
) -> int | None:
    """The index of the first item whose new series finds no room left; None if an item with an
    id comes first, which the store may refuse for its id (unknown, conflicting) or join."""
    kept = dict(records.keyed if isinstance(records, FeedbackBatch) else enumerate(records))
    seen: set[Series] = set()
    for index, series in enumerate(_named(records)):
        item = kept.get(index)
        if item is not None and item.id is not None:
            return None
        if series in new:
            seen.add(series)
            if len(seen) > room:
                return index
    raise AssertionError("more new series than room, yet none past it")


class SeriesCapReached(ClientError):
    def __init__(self, cap: int, index: int | None) -> None:
        message = f"Too many series: at most {cap} (model, version) pairs (--max-series)"
        super().__init__(422, message, "series_cap", index)
