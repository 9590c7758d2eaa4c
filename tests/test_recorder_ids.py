"""Recorder with ids and series: the series cap, refusals as client errors, idempotency under
concurrent senders and across restarts, expiry of predictions."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from feedback_monitor.confusion import Counts
from feedback_monitor.errors import ClientError
from feedback_monitor.recorder import Recorder, Refusal, SeriesCapReached
from feedback_monitor.records import Feedback, Prediction
from feedback_monitor.store import Accepted, AsyncStore, Series
from feedback_monitor.store.child import ChildStore
from feedback_monitor.store.sqlite import SQLiteStore
from feedback_monitor.windows import Retention
from tests.stores import Sized, ThreadedStore

T = TypeVar("T")
M0: Series = ("m0", "")
M1: Series = ("m1", "")


def threaded(data_dir: Path) -> AsyncStore:
    return ThreadedStore(SQLiteStore(data_dir))


STORES = {"thread": threaded, "child process": ChildStore}


def run(
    store: AsyncStore,
    scenario: Callable[[Recorder], Awaitable[T]],
    max_series: int = 1000,
    refresh: float | None = None,
) -> T:
    async def main() -> T:
        recorder = Recorder(store, max_series, refresh)
        await recorder.start()
        try:
            return await scenario(recorder)
        finally:
            await recorder.close()

    return asyncio.run(main())


def model(i: int, prediction: int = 1, actual: int = 1, id: str | None = None) -> Feedback:
    return Feedback(prediction, actual, f"m{i}", id=id)


def test_a_request_naming_one_series_too_many_is_422_and_stores_nothing(tmp_path: Path) -> None:
    sizes: list[int] = []

    async def scenario(recorder: Recorder) -> None:
        for i in range(3):
            await recorder.record(model(i))
        before = dict(recorder.snapshot)
        attempts: list[Callable[[], Awaitable[object]]] = [
            lambda: recorder.record(model(3)),
            lambda: recorder.write([Prediction("p", 1, "m3")], batch=False),
        ]
        for attempt in attempts:
            with pytest.raises(SeriesCapReached) as refused:
                await attempt()
            assert (refused.value.status, refused.value.reason) == (422, "series_cap")
            assert isinstance(refused.value, ClientError)
            assert refused.value.index is None
        batch: list[Feedback | Prediction] = [
            model(0),
            Prediction("q", 1, "m1"),
            model(4),
            model(3),
        ]
        with pytest.raises(SeriesCapReached) as refused:
            await recorder.write(batch)
        assert refused.value.index == 2  # the first item naming a new series
        assert dict(recorder.snapshot) == before
        # The plain ones were refused at once; the store decided where a prediction's id
        # might have been refused first (unknown, conflicting).
        assert sizes == [1, 1, 1, 1, 4]
        with pytest.raises(SeriesCapReached) as refused:
            await recorder.write([model(0), model(4), Prediction("q", 1, "m1")])
        assert refused.value.index == 1
        assert sizes == [1, 1, 1, 1, 4]  # no write reached the store
        accepted = await recorder.record(model(1, 0, 0))  # known series still count
        state = recorder.snapshot[accepted.series[0]]
        assert (accepted, state.counts) == (Accepted(1, 0, [M1]), Counts(tp=1, tn=1))
        assert len(recorder.snapshot) == 3

    run(Sized(threaded(tmp_path), sizes), scenario, max_series=3)
    store = SQLiteStore(tmp_path)
    assert sorted(store.load()) == [M0, M1, ("m2", "")]
    store.close()


def test_joins_do_not_count_against_the_cap(tmp_path: Path) -> None:
    async def scenario(recorder: Recorder) -> None:
        await recorder.write([Prediction("p-1", 1, *M0), Prediction("p-2", 0, *M0)])
        accepted = await recorder.record(Feedback(None, 0, id="p-1"))  # model "default"
        state = recorder.snapshot[accepted.series[0]]
        assert (accepted, state.counts, state.labelled) == (Accepted(1, 0, [M0]), Counts(fp=1), 1)
        assert await recorder.write([Feedback(None, 0, "other", id="p-2")]) == Accepted(1, 0, [M0])
        with pytest.raises(Refusal) as unknown:  # a join of nothing is a 404, not a 422
            await recorder.record(Feedback(None, 1, id="nowhere"))
        assert unknown.value.status == 404
        assert list(recorder.snapshot) == [M0]

    run(threaded(tmp_path), scenario, max_series=1)


@pytest.mark.parametrize("make_store", list(STORES.values()), ids=list(STORES))
def test_a_join_repeating_its_prediction_does_not_count_against_the_cap(
    tmp_path: Path, make_store: Callable[[Path], AsyncStore]
) -> None:
    async def scenario(recorder: Recorder) -> None:
        await recorder.write([Prediction("p-1", 1, *M0), Prediction("p-2", 0, *M0)])
        accepted = await recorder.record(Feedback(1, 1, id="p-1"))  # model "default"
        assert accepted == Accepted(1, 0, [M0])
        assert await recorder.record(Feedback(1, 1, id="p-1")) == Accepted(0, 1, [M0])
        # The same in a batch, beside one that would create a series: that one is refused,
        # by its index, and nothing of the batch is stored.
        with pytest.raises(SeriesCapReached) as capped:
            await recorder.write([Feedback(0, 0, id="p-2"), Feedback(1, 0, *M1, id="new")])
        assert (capped.value.status, capped.value.index) == (422, 1)
        assert (
            capped.value.message
            == "Too many series: at most 1 (model, version) pairs (--max-series)"
        )
        with pytest.raises(SeriesCapReached) as alone:
            await recorder.record(Feedback(1, 0, *M1, id="new"))
        assert alone.value.index is None
        assert list(recorder.snapshot) == [M0]
        assert recorder.snapshot[M0].counts == Counts(tp=1)
        assert await recorder.write([Feedback(0, 0, id="p-2")]) == Accepted(1, 0, [M0])

    run(make_store(tmp_path), scenario, max_series=1)
    store = SQLiteStore(tmp_path)
    assert list(store.load()) == [M0]  # the refused id is not stored either
    assert store.load()[M0].counts == Counts(tp=1, tn=1)
    store.close()


@pytest.mark.parametrize("make_store", list(STORES.values()), ids=list(STORES))
def test_at_the_cap_a_batch_with_ids_is_refused_at_the_first_item_past_it(
    tmp_path: Path, make_store: Callable[[Path], AsyncStore]
) -> None:
    """Items with ids and predictions may be joins, which create no series: the series they
    name are held in item order while room is left, so the first item past the cap is refused,
    as it is without ids (the Python client gives every item an id)."""

    async def scenario(recorder: Recorder) -> None:
        await recorder.write([Prediction("p", 1, "m9")])
        batch = [model(0, id="a"), Feedback(None, 1, "m7", id="p"), model(1, id="b")]
        batch += [model(0, id="d"), model(2, id="c")]
        with pytest.raises(SeriesCapReached) as capped:
            await recorder.write(batch)
        assert capped.value.index == 4
        assert list(recorder.snapshot) == [("m9", "")]
        accepted = await recorder.write(batch[:4])  # the client's retry without the item
        assert accepted == Accepted(4, 0, [M0, M1, ("m9", "")])

    run(make_store(tmp_path), scenario, max_series=3)


@pytest.mark.parametrize("make_store", list(STORES.values()), ids=list(STORES))
def test_at_the_cap_labels_and_joins_are_not_the_item_refused(
    tmp_path: Path, make_store: Callable[[Path], AsyncStore]
) -> None:
    """A label names its series only once joined, and a feedback with an id and a prediction
    may join instead of creating one: the 422 names the first item that does create one,
    whether the recorder refuses at once or the store does."""

    async def scenario(recorder: Recorder) -> None:
        await recorder.write([Prediction("p-1", 1, *M0)])
        batches: list[list[Feedback | Prediction]] = [
            [Feedback(None, 1, id="p-1"), Feedback(1, 0)],  # both name "default"
            [Feedback(1, 1, *M1, id="p-1"), Feedback(1, 0, *M1)],  # a join, then M1's first
            [Feedback(1, 1, *M1, id="new"), Feedback(1, 0, *M1)],  # the first creates M1
        ]
        indexes = []
        for batch in batches:
            with pytest.raises(SeriesCapReached) as capped:
                await recorder.write(batch)
            indexes.append(capped.value.index)
        assert indexes == [1, 1, 0]
        assert list(recorder.snapshot) == [M0]
        assert recorder.snapshot[M0].counts == Counts()

    run(make_store(tmp_path), scenario, max_series=1)


@pytest.mark.parametrize("make_store", list(STORES.values()), ids=list(STORES))
def test_at_the_cap_an_unknown_or_conflicting_id_is_refused_first(
    tmp_path: Path, make_store: Callable[[Path], AsyncStore]
) -> None:
    """The store applies a request's items in order: an item that comes before the one past
    the cap is refused first for its id, and the answer is the same whether the recorder
    could have refused at once or not."""

    async def scenario(recorder: Recorder) -> None:
        await recorder.write([Prediction("p-1", 1, *M0)])
        attempts: list[tuple[list[Feedback | Prediction], bool]] = [
            ([Feedback(None, 1, id="nowhere"), model(1), model(2)], True),
            ([Prediction("p-1", 1, *M1)], False),
            ([Prediction("q", 1, *M1), Prediction("q", 0, "m2")], True),
        ]
        answers = []
        for records, batch in attempts:
            with pytest.raises(ClientError) as refused:
                await recorder.write(records, batch)
            answers.append((refused.value.status, refused.value.reason, refused.value.index))
        assert answers == [(404, "unknown_id", 0), (409, "conflict", None), (409, "conflict", 1)]
        assert list(recorder.snapshot) == [M0]
        await recorder.record(model(5))  # the cap is reached
        with pytest.raises(Refusal) as conflict:
            await recorder.write([Prediction("p-1", 1, "m6")], batch=False)
        assert (conflict.value.status, conflict.value.index) == (409, None)
        with pytest.raises(Refusal) as unknown:
            await recorder.write([Feedback(None, 1, id="nowhere"), model(7)])
        assert (unknown.value.status, unknown.value.index) == (404, 0)
        with pytest.raises(SeriesCapReached) as capped:
            await recorder.write([model(7), Feedback(None, 1, id="nowhere")])
        assert capped.value.index == 0

    run(make_store(tmp_path), scenario, max_series=2)


@pytest.mark.parametrize("room", [0, 1])
def test_a_replica_refuses_at_once_only_what_names_the_stores_index(
    tmp_path: Path, room: int
) -> None:
    """A replica's snapshot may lack the series others created in the last second, so its
    index could come out later than the store's: it refuses a batch at once only when the cap
    is reached, and the snapshot then holds every series."""
    sizes: list[int] = []

    async def scenario(recorder: Recorder) -> None:
        await recorder.write([Feedback(1, 1, f"s{n}") for n in range(3 - room)])
        writes = len(sizes)
        with pytest.raises(SeriesCapReached) as capped:
            await recorder.write([model(7), model(8), model(9)])
        assert capped.value.index == room
        assert len(sizes) == writes + room  # with room left, the store decided

    run(Sized(threaded(tmp_path), sizes), scenario, max_series=3, refresh=60.0)


def test_a_refused_request_does_not_use_up_the_cap(tmp_path: Path) -> None:
    async def scenario(recorder: Recorder) -> None:
        await recorder.write([Prediction("p-1", 0, *M0)])
        with pytest.raises(Refusal):  # 409: contradicts the stored prediction
            await recorder.record(Feedback(1, 1, *M1, id="p-1"))
        assert list(recorder.snapshot) == [M0]
        accepted = await recorder.record(model(2))  # the second series of a cap of two
        assert accepted == Accepted(1, 0, [("m2", "")])

    run(threaded(tmp_path), scenario, max_series=2)


def test_refusals_are_client_errors_naming_the_item_and_storing_nothing(tmp_path: Path) -> None:
    async def scenario(recorder: Recorder) -> None:
        await recorder.record(model(0, 1, 0, id="f-1"))
        before = dict(recorder.snapshot)
        batch = [model(0), model(0, 0, 0, id="f-2"), Feedback(None, 1, id="nowhere")]
        with pytest.raises(Refusal) as unknown:
            await recorder.write(batch)
        with pytest.raises(Refusal) as alone:
            await recorder.write(batch, batch=False)
        assert (unknown.value.status, unknown.value.message) == (404, "Unknown prediction id")
        assert (unknown.value.index, alone.value.index) == (2, None)
        with pytest.raises(Refusal) as conflict:
            await recorder.record(model(0, 1, 1, id="f-1"))
        assert (conflict.value.status, conflict.value.message, conflict.value.index) == (
            409,
            "Conflicting feedback for id",
            None,
        )
        assert isinstance(conflict.value, ClientError)
        assert dict(recorder.snapshot) == before
        assert await recorder.write([model(0, 0, 0, id="f-2")]) == Accepted(1, 0, [M0])

    run(threaded(tmp_path), scenario)


SENDERS = 32


async def at_once(recorder: Recorder, feedback: Feedback) -> list[Accepted]:
    """``SENDERS`` clients send the same feedback at once, spread over a few loop iterations
    so that the store sees several requests, pipelined, as well as repeats within one."""

    async def sender(number: int) -> Accepted:
        for _ in range(number % 4):
            await asyncio.sleep(0)  # a turn of the loop, not a pause
        accepted = await recorder.record(feedback)
        state = recorder.snapshot[accepted.series[0]]
        assert state == recorder.snapshot[accepted.series[0]]
        return accepted

    return await asyncio.gather(*(sender(number) for number in range(SENDERS)))


@pytest.mark.parametrize("make_store", list(STORES.values()), ids=list(STORES))
def test_concurrent_senders_of_one_id_count_it_once_also_after_a_restart(
    tmp_path: Path, make_store: Callable[[Path], AsyncStore]
) -> None:
    direct, join = model(0, 1, 0, id="same"), Feedback(None, 1, id="p-1")
    once = sorted([Accepted(1, 0, [M0])] + [Accepted(0, 1, [M0])] * (SENDERS - 1))

    async def first(recorder: Recorder) -> None:
        assert sorted(await at_once(recorder, direct)) == once
        await recorder.write([Prediction("p-1", 1, *M0, timestamp=time.time() - 5)])
        assert sorted(await at_once(recorder, join)) == once
        state = recorder.snapshot[M0]
        assert (state.counts, state.predicted, state.labelled) == (Counts(tp=1, fp=1), 1, 1)
        assert sum(state.delays) == 1

    async def after_restart(recorder: Recorder) -> None:
        before = recorder.snapshot[M0]
        for repeat in (direct, join):
            assert await at_once(recorder, repeat) == [Accepted(0, 1, [M0])] * SENDERS
        assert recorder.snapshot[M0] == before

    sizes: list[int] = []
    run(Sized(make_store(tmp_path), sizes), first)
    assert len(sizes) > 3, sizes  # the senders reached the store in several requests
    run(make_store(tmp_path), after_restart)


def test_expire_drops_old_unlabelled_predictions_from_the_snapshot(tmp_path: Path) -> None:
    offset = [-1000.0]  # the store's clock runs behind: what it stores now is old

    async def scenario(recorder: Recorder) -> None:
        await recorder.write([Prediction("old", 1, *M0), Prediction("old-labelled", 0, *M0)])
        await recorder.record(Feedback(None, 0, id="old-labelled"))
        offset[0] = 0.0
        await recorder.write([Prediction("young", 1, *M0)])
        await recorder.expire(ttl=500, retention=Retention())
        state = recorder.snapshot[M0]
        assert (state.predicted, state.labelled, state.expired, state.pending) == (3, 1, 1, 1)
        with pytest.raises(Refusal) as gone:
            await recorder.record(Feedback(None, 1, id="old"))
        assert gone.value.status == 404
        accepted = await recorder.record(Feedback(None, 1, id="young"))
        state = recorder.snapshot[accepted.series[0]]
        assert (accepted, state.counts, state.pending) == (
            Accepted(1, 0, [M0]),
            Counts(tp=1, tn=1),
            0,
        )

    run(ThreadedStore(SQLiteStore(tmp_path), lambda: time.time() + offset[0]), scenario)


def test_a_series_just_committed_is_not_counted_twice_against_the_cap(tmp_path: Path) -> None:
    # cap 3, m0 stored; m1 and m2 sent together: m1's claim must not still count once m1 is
    # in the snapshot, so m2 fits; and a request touching only stored series always fits.
    async def scenario(recorder: Recorder) -> None:
        await recorder.record(model(0))
        await asyncio.gather(recorder.record(model(1)), recorder.record(model(2)))
        assert set(recorder.snapshot) == {("m0", ""), ("m1", ""), ("m2", "")}
        batch = await recorder.write([model(0), model(1), model(2)])
        assert batch.accepted == 3

    run(threaded(tmp_path), scenario, max_series=3)
