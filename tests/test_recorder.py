"""Recorder: group commit over a real SQLiteStore, answers from committed totals, shutdown."""

import asyncio
import itertools
import random
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from feedback_monitor.confusion import Counts
from feedback_monitor.recorder import Recorder, RecorderClosed
from feedback_monitor.records import Feedback
from feedback_monitor.store import AsyncStore, Series
from feedback_monitor.store.child import ChildStore
from feedback_monitor.store.sqlite import SQLiteStore
from tests.stores import ThreadedStore

WAIT = 10.0  # seconds; a deadline for conditions, never a pause
BASE = {("a", ""): Counts(5, 6, 7, 8)}


class StoreDown(Exception):
    """The error a broken store raises."""


class GatedStore:
    """A real SQLiteStore whose commits can be held at a gate or made to fail."""

    def __init__(self, data_dir: Path) -> None:
        self.inner = SQLiteStore(data_dir)
        self.failing = False
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()

    def load(self) -> dict[Series, Counts]:
        return self.inner.load()

    def commit(self, deltas: Mapping[Series, Counts]) -> dict[Series, Counts]:
        self.entered.set()
        assert self.gate.wait(WAIT)
        if self.failing:
            raise StoreDown("disk on fire")
        return self.inner.commit(deltas)

    def ping(self) -> None:
        self.inner.ping()

    def close(self) -> None:
        self.inner.close()


class Sized:
    """An AsyncStore that notes the feedback count of every successful commit request."""

    def __init__(self, inner: AsyncStore, sizes: list[int]) -> None:
        self.inner = inner
        self.sizes = sizes

    async def load(self) -> dict[Series, Counts]:
        return await self.inner.load()

    async def commit(self, deltas: Mapping[Series, Counts]) -> dict[Series, Counts]:
        totals = await self.inner.commit(deltas)
        self.sizes.append(sum(delta.total for delta in deltas.values()))
        return totals

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


def feedbacks(count: int, seed: int) -> list[Feedback]:
    rng = random.Random(seed)
    return [
        Feedback(rng.randint(0, 1), rng.randint(0, 1), model=rng.choice("ab")) for _ in range(count)
    ]


def totals(base: Mapping[Series, Counts], records: list[Feedback]) -> dict[Series, Counts]:
    result = dict(base)
    for f in records:
        result[f.series] = result.get(f.series, Counts()).add(f.prediction, f.actual)
    return result


def reopened(data_dir: Path) -> dict[Series, Counts]:
    store = SQLiteStore(data_dir)
    try:
        return store.load()
    finally:
        store.close()


def seed_store(data_dir: Path) -> None:
    store = SQLiteStore(data_dir)
    store.commit(BASE)
    store.close()


def threaded(data_dir: Path) -> AsyncStore:
    return ThreadedStore(SQLiteStore(data_dir))


STORES = {"thread": threaded, "child process": ChildStore}


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("make_store", list(STORES.values()), ids=list(STORES))
def test_concurrent_records_are_group_committed_and_answered_from_totals(
    tmp_path: Path, make_store: Callable[[Path], AsyncStore], seed: int
) -> None:
    seed_store(tmp_path)
    records = feedbacks(200, seed)
    sizes: list[int] = []

    async def main() -> list[Counts]:
        recorder = Recorder(Sized(make_store(tmp_path), sizes))
        await recorder.start()
        assert dict(recorder.snapshot) == BASE
        try:
            answers = await asyncio.gather(*(recorder.record(f) for f in records))
            assert dict(recorder.snapshot) == totals(BASE, records)
            return answers
        finally:
            await recorder.close()

    answers = asyncio.run(main())
    assert sum(sizes) == len(records)
    assert max(sizes) > 1, sizes
    # Records are queued in submission order, so batch k holds a contiguous run of them, and
    # each answer is its series' total just after the commit of its batch, its own record included.
    for start, end in itertools.pairwise([0, *itertools.accumulate(sizes)]):
        after = totals(BASE, records[:end])
        for f, answer in zip(records[start:end], answers[start:end], strict=True):
            assert answer == after[f.series]
    assert reopened(tmp_path) == totals(BASE, records)


@pytest.mark.parametrize("make_store", list(STORES.values()), ids=list(STORES))
def test_clients_waiting_for_answers_get_exactly_their_own_totals(
    tmp_path: Path, make_store: Callable[[Path], AsyncStore]
) -> None:
    # Each client has a series of its own and sends its next feedback once the last is answered,
    # so every answer must be exactly the totals of that client's feedback so far.
    clients = {f"client-{c}": feedbacks(10, seed=c) for c in range(20)}
    sizes: list[int] = []

    async def client(recorder: Recorder, model: str) -> list[tuple[Counts, Counts]]:
        pairs, expected = [], Counts()
        for f in clients[model]:
            expected = expected.add(f.prediction, f.actual)
            pairs.append((await recorder.record(f._replace(model=model)), expected))
        return pairs

    async def main() -> list[list[tuple[Counts, Counts]]]:
        recorder = Recorder(Sized(make_store(tmp_path), sizes))
        await recorder.start()
        try:
            return await asyncio.gather(*(client(recorder, model) for model in clients))
        finally:
            await recorder.close()

    for pairs in asyncio.run(main()):
        for answer, expected in pairs:
            assert answer == expected
    assert sum(sizes) == 200
    assert len(sizes) >= 10  # each client needs ten commits, one after another
    assert max(sizes) > 1, sizes


def test_close_commits_and_answers_what_is_queued(tmp_path: Path) -> None:
    store = GatedStore(tmp_path)
    first, *rest = feedbacks(50, seed=7)
    sizes: list[int] = []

    async def main() -> list[Counts]:
        recorder = Recorder(Sized(ThreadedStore(store), sizes))
        await recorder.start()
        store.gate.clear()
        in_flight = asyncio.create_task(recorder.record(first))
        assert await asyncio.to_thread(store.entered.wait, WAIT)  # first commit holds the writer
        queued = [asyncio.create_task(recorder.record(f)) for f in rest]
        closing = asyncio.create_task(recorder.close())
        # Released only after the queued records and close() have all taken their first step.
        asyncio.get_running_loop().call_soon(store.gate.set)
        await closing
        assert all(task.done() for task in queued)
        with pytest.raises(RecorderClosed):
            await recorder.record(first)
        return await asyncio.gather(in_flight, *queued)

    answers = asyncio.run(main())
    assert sizes == [1, len(rest)]
    everything = totals({}, [first, *rest])
    assert answers[-1] == everything[rest[-1].series]
    assert reopened(tmp_path) == everything


def test_record_after_close_raises_recorder_closed(tmp_path: Path) -> None:
    async def main() -> None:
        recorder = Recorder(threaded(tmp_path))
        await recorder.start()
        await recorder.record(Feedback(1, 1))
        await recorder.close()
        with pytest.raises(RecorderClosed) as closed:
            await recorder.record(Feedback(0, 0))
        assert closed.value.status == 503

    asyncio.run(main())
    assert reopened(tmp_path) == {("default", ""): Counts(tp=1)}


def test_a_failing_commit_is_raised_to_every_caller_and_leaves_the_snapshot(
    tmp_path: Path,
) -> None:
    seed_store(tmp_path)
    store = GatedStore(tmp_path)
    sizes: list[int] = []
    records = feedbacks(20, seed=3)

    async def main() -> None:
        recorder = Recorder(Sized(ThreadedStore(store), sizes))
        await recorder.start()
        try:
            store.failing = True
            outcomes = await asyncio.gather(
                *(recorder.record(f) for f in records), return_exceptions=True
            )
            assert all(isinstance(outcome, StoreDown) for outcome in outcomes), outcomes
            assert dict(recorder.snapshot) == BASE
            assert sizes == []
            store.failing = False  # the writer lives on once the store recovers
            answer = await recorder.record(Feedback(0, 1, model="a"))
            assert answer == BASE["a", ""].add(prediction=0, actual=1)
            assert dict(recorder.snapshot) == {("a", ""): answer}
        finally:
            await recorder.close()

    asyncio.run(main())
    assert reopened(tmp_path) == {("a", ""): BASE["a", ""].add(prediction=0, actual=1)}


def test_a_cancelled_caller_does_not_disturb_the_others(tmp_path: Path) -> None:
    store = GatedStore(tmp_path)
    records = feedbacks(10, seed=11)

    async def main() -> list[Counts]:
        recorder = Recorder(ThreadedStore(store))
        await recorder.start()
        try:
            store.gate.clear()
            tasks = [asyncio.create_task(recorder.record(f)) for f in records]
            assert await asyncio.to_thread(store.entered.wait, WAIT)
            tasks[0].cancel()
            store.gate.set()
            answers = await asyncio.gather(*tasks[1:])
            assert tasks[0].cancelled()
            assert await recorder.record(records[0]) == recorder.snapshot[records[0].series]
            return answers
        finally:
            await recorder.close()

    answers = asyncio.run(main())
    assert answers == [totals({}, records)[f.series] for f in records[1:]]


def test_snapshot_is_read_only(tmp_path: Path) -> None:
    seed_store(tmp_path)

    async def main() -> None:
        recorder = Recorder(threaded(tmp_path))
        await recorder.start()
        try:
            with pytest.raises(TypeError):
                recorder.snapshot["a", ""] = Counts()  # type: ignore[index]
        finally:
            await recorder.close()

    asyncio.run(main())
