"""Recorder: group commit over a real SQLiteStore, answers from committed totals, shutdown."""

import asyncio
import itertools
import json
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from sklearn.metrics import confusion_matrix

from feedback_monitor.confusion import Counts
from feedback_monitor.errors import StoreBug, Unavailable
from feedback_monitor.recorder import Recorder, RecorderClosed, StoreTimedOut, WriteLost
from feedback_monitor.records import Feedback, Prediction, parse_feedback_batch
from feedback_monitor.series import SeriesState
from feedback_monitor.store import Accepted, AsyncStore, Series
from feedback_monitor.store.child import ChildStore
from feedback_monitor.store.sqlite import SQLiteStore
from feedback_monitor.windows import Retention
from tests.stores import WAIT, GatedStore, Sized, StoreDown, ThreadedStore

BASE = {("a", ""): Counts(5, 6, 7, 8)}


def feedbacks(count: int, seed: int) -> list[Feedback]:
    rng = random.Random(seed)
    return [
        Feedback(rng.randint(0, 1), rng.randint(0, 1), model=rng.choice("ab")) for _ in range(count)
    ]


def totals(base: Mapping[Series, Counts], records: list[Feedback]) -> dict[Series, Counts]:
    result = dict(base)
    for f in records:
        assert f.prediction is not None
        result[f.series] = result.get(f.series, Counts()).add(f.prediction, f.actual)
    return result


def counts_of(states: Mapping[Series, SeriesState]) -> dict[Series, Counts]:
    return {series: state.counts for series, state in states.items()}


def reopened(data_dir: Path) -> dict[Series, Counts]:
    store = SQLiteStore(data_dir)
    try:
        return counts_of(store.load())
    finally:
        store.close()


async def counted(recorder: Recorder, feedback: Feedback) -> Counts:
    """Record a feedback that must count; its series' counts right after its commit."""
    accepted = await recorder.record(feedback)
    state = recorder.snapshot[accepted.series[0]]
    assert accepted == Accepted(1, 0, [feedback.series])
    return state.counts


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
        assert counts_of(recorder.snapshot) == BASE
        try:
            answers = await asyncio.gather(*(counted(recorder, f) for f in records))
            assert counts_of(recorder.snapshot) == totals(BASE, records)
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
            assert f.prediction is not None
            expected = expected.add(f.prediction, f.actual)
            pairs.append((await counted(recorder, f._replace(model=model)), expected))
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
        in_flight = asyncio.create_task(counted(recorder, first))
        assert await asyncio.to_thread(store.entered.wait, WAIT)  # first commit holds the writer
        queued = [asyncio.create_task(counted(recorder, f)) for f in rest]
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
            assert counts_of(recorder.snapshot) == BASE
            assert sizes == []
            store.failing = False  # the writer lives on once the store recovers
            answer = await counted(recorder, Feedback(0, 1, model="a"))
            assert answer == BASE["a", ""].add(prediction=0, actual=1)
            assert counts_of(recorder.snapshot) == {("a", ""): answer}
        finally:
            await recorder.close()

    asyncio.run(main())
    assert reopened(tmp_path) == {("a", ""): BASE["a", ""].add(prediction=0, actual=1)}


def test_a_bug_one_request_sets_off_fails_that_request_alone(tmp_path: Path) -> None:
    """The requests that waited together go in one transaction; when a bug fails it (nothing
    stored), each goes again alone: the one at fault fails, every other is counted once."""
    seed_store(tmp_path)
    store = GatedStore(tmp_path)
    store.poison = "poison"
    plain = feedbacks(6, seed=5)
    keyed = [Feedback(1, n % 2, model="a", id=f"k{n}") for n in range(4)]
    bad = Feedback(1, 1, model="a", id="poison")

    async def main() -> list[Any]:
        recorder = Recorder(ThreadedStore(store))
        await recorder.start()
        try:
            store.gate.clear()
            first = recorder.record(plain[0])  # in flight at the gate: the rest wait as one
            assert await asyncio.to_thread(store.entered.wait, WAIT)
            waiting = [recorder.record(f) for f in [*plain[1:], *keyed[:2], bad, *keyed[2:]]]
            store.gate.set()
            return await asyncio.gather(first, *waiting, return_exceptions=True)
        finally:
            await recorder.close()

    outcomes = asyncio.run(main())
    assert [type(o) for o in outcomes] == [Accepted] * 8 + [StoreBug] + [Accepted] * 2
    assert reopened(tmp_path) == totals(BASE, [*plain, *keyed])


def test_a_write_whose_answer_is_lost_may_be_stored_and_shows_once_the_store_is_back(
    tmp_path: Path,
) -> None:
    """The store process died between its COMMIT and its answer: the request hears that its
    write may be stored, and the snapshot takes the committed series from the store again
    (it stayed without them until that series was written again)."""
    seed_store(tmp_path)
    store = GatedStore(tmp_path)

    async def main() -> None:
        recorder = Recorder(ThreadedStore(store))
        await recorder.start()
        try:
            store.losing = True
            with pytest.raises(WriteLost, match="may still be stored"):
                await recorder.write([Feedback(1, 1, model="new")])
            store.losing = False
            deadline = asyncio.get_running_loop().time() + WAIT
            while ("new", "") not in recorder.snapshot:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.01)
            assert counts_of(recorder.snapshot) == {**BASE, ("new", ""): Counts(tp=1)}
        finally:
            await recorder.close()

    asyncio.run(main())


def test_a_bug_after_the_commit_sends_nothing_again_and_reloads_the_snapshot(
    tmp_path: Path,
) -> None:
    """Reading a committed write's answer failed: its requests get the error (a 500), and are
    not sent again (counted twice); the snapshot takes their totals from the store."""
    seed_store(tmp_path)
    store = GatedStore(tmp_path)
    records = [Feedback(1, 1, model="a"), Feedback(0, 1, model="a", score=0.5)]

    async def main() -> list[Any]:
        recorder = Recorder(ThreadedStore(store))
        await recorder.start()
        try:
            store.gate.clear()
            store.misread = True
            first = recorder.record(records[0])
            assert await asyncio.to_thread(store.entered.wait, WAIT)
            second = recorder.record(records[1])
            third = recorder.record(Feedback(0, 0, model="a", id="x"))
            store.gate.set()
            outcomes = await asyncio.gather(first, second, third, return_exceptions=True)
            store.misread = False
            expected = BASE["a", ""].add(1, 1).add(0, 1).add(0, 0)
            deadline = asyncio.get_running_loop().time() + WAIT
            while recorder.snapshot["a", ""].counts != expected:
                assert asyncio.get_running_loop().time() < deadline, recorder.snapshot
                await asyncio.sleep(0.01)
            return list(outcomes)
        finally:
            await recorder.close()

    outcomes = asyncio.run(main())
    assert [type(o) for o in outcomes] == [KeyError] * 3  # two writes, each answer misread
    assert reopened(tmp_path) == {("a", ""): BASE["a", ""].add(1, 1).add(0, 1).add(0, 0)}


def test_an_expiry_misread_after_its_commit_reloads_the_snapshot(tmp_path: Path) -> None:
    store = GatedStore(tmp_path)

    async def main() -> None:
        recorder = Recorder(ThreadedStore(store))
        await recorder.start()
        try:
            await recorder.write([Prediction("p-1", 1, "a")], batch=False)
            store.misread = True
            with pytest.raises(KeyError):
                await recorder.expire(-60.0, Retention())  # stored before a minute from now
            store.misread = False
            deadline = asyncio.get_running_loop().time() + WAIT
            while recorder.snapshot["a", ""].expired != 1:
                assert asyncio.get_running_loop().time() < deadline, recorder.snapshot
                await asyncio.sleep(0.01)
        finally:
            await recorder.close()

    asyncio.run(main())


def test_a_cancelled_caller_does_not_disturb_the_others(tmp_path: Path) -> None:
    store = GatedStore(tmp_path)
    records = feedbacks(10, seed=11)

    async def main() -> list[Counts]:
        recorder = Recorder(ThreadedStore(store))
        await recorder.start()
        try:
            store.gate.clear()
            tasks = [asyncio.create_task(counted(recorder, f)) for f in records]
            assert await asyncio.to_thread(store.entered.wait, WAIT)
            tasks[0].cancel()
            store.gate.set()
            answers = await asyncio.gather(*tasks[1:])
            assert tasks[0].cancelled()
            again = await counted(recorder, records[0])
            assert again == recorder.snapshot[records[0].series].counts
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
                recorder.snapshot["a", ""] = SeriesState()  # type: ignore[index]
        finally:
            await recorder.close()

    asyncio.run(main())


@pytest.mark.parametrize("seed", range(3))
def test_a_parsed_batch_counts_every_cell_under_its_series(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    items: list[dict[str, Any]] = [
        {"prediction": rng.randint(0, 1), "actual": rng.randint(0, 1), "model": rng.choice("ab")}
        for _ in range(rng.randint(1, 300))
    ]
    parsed = parse_feedback_batch(json.dumps({"items": items}).encode(), len(items))

    async def scenario() -> Accepted:
        recorder = Recorder(threaded(tmp_path))
        await recorder.start()
        try:
            return await recorder.write(parsed)
        finally:
            await recorder.close()

    accepted = asyncio.run(scenario())
    assert (accepted.accepted, accepted.duplicates) == (len(items), 0)
    expected = {}
    for name in sorted({item["model"] for item in items}):
        mine = [item for item in items if item["model"] == name]
        actual, predicted = [i["actual"] for i in mine], [i["prediction"] for i in mine]
        tn, fp, fn, tp = confusion_matrix(actual, predicted, labels=[0, 1]).ravel().tolist()
        expected[name, ""] = Counts(tp, tn, fp, fn)
    assert accepted.series == list(expected)
    assert reopened(tmp_path) == expected


def test_a_write_the_store_leaves_unanswered_gets_a_503_in_time(tmp_path: Path) -> None:
    """The store hangs (a disk, a lock): the request in flight is told its write may still be
    stored, the one queued behind it that it was not sent; once the store answers, the first
    is found stored, and writes go on."""
    store = GatedStore(tmp_path)
    held, queued, later = Feedback(1, 1, id="held"), Feedback(0, 0, id="queued"), Feedback(1, 0)

    async def main() -> Counts:
        recorder = Recorder(ThreadedStore(store), write_timeout=0.2)
        await recorder.start()
        try:
            store.gate.clear()
            first = asyncio.ensure_future(recorder.record(held))
            assert await asyncio.to_thread(store.entered.wait, WAIT)
            second = asyncio.ensure_future(recorder.record(queued))
            with pytest.raises(StoreTimedOut, match="may still be stored"):
                await asyncio.wait_for(first, WAIT)
            with pytest.raises(Unavailable) as unsent:
                await asyncio.wait_for(second, WAIT)
            assert unsent.value.reason == "store_unavailable"
            third = asyncio.ensure_future(recorder.record(queued))  # a later tick's
            with pytest.raises(Unavailable) as also_unsent:
                await asyncio.wait_for(third, WAIT)
            assert also_unsent.value is not unsent.value  # no traceback grows tick by tick
            store.gate.set()
            await recorder.write([later], batch=False)
            return recorder.state(("default", "")).counts
        finally:
            store.gate.set()
            await recorder.close()

    assert asyncio.run(main()) == Counts(tp=1, fp=1)  # the held write and the later one
