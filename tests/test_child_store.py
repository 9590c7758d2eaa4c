"""ChildStore: a SQLiteStore in a child process, answering one request at a time over pipes."""

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from feedback_monitor.confusion import Counts
from feedback_monitor.errors import Unavailable
from feedback_monitor.store import Series
from feedback_monitor.store.child import ChildStore, StoreError, from_rows, to_rows
from feedback_monitor.store.sqlite import SQLiteStore

A: Series = ("default", "")
B: Series = ("fraud", "v2")


def run(data_dir: Path, scenario: Callable[[ChildStore], Awaitable[None]]) -> None:
    async def main() -> None:
        store = ChildStore(data_dir)
        try:
            await scenario(store)
        finally:
            await store.close()

    asyncio.run(main())


def stored(data_dir: Path) -> dict[Series, Counts]:
    store = SQLiteStore(data_dir)
    try:
        return store.load()
    finally:
        store.close()


def test_rows_round_trip() -> None:
    counts = {A: Counts(1, 2, 3, 4), B: Counts(), ("ü", "'\n"): Counts(fn=9)}
    assert from_rows(to_rows(counts)) == counts


def test_load_commit_ping_and_close(tmp_path: Path) -> None:
    async def scenario(store: ChildStore) -> None:
        assert await store.load() == {}
        assert await store.commit({A: Counts(1, 2, 3, 4), B: Counts(tp=1)}) == {
            A: Counts(1, 2, 3, 4),
            B: Counts(tp=1),
        }
        assert await store.commit({A: Counts(tn=1)}) == {A: Counts(1, 3, 3, 4)}
        await store.ping()

    run(tmp_path, scenario)
    assert stored(tmp_path) == {A: Counts(1, 3, 3, 4), B: Counts(tp=1)}  # the child let go


def test_a_failed_request_is_a_store_error_and_the_child_stays_up(tmp_path: Path) -> None:
    async def scenario(store: ChildStore) -> None:
        await store.commit({A: Counts(tp=1)})
        with pytest.raises(StoreError) as failed:
            await store.commit({A: Counts(tp=1), B: Counts(tp=2**63)})  # B cannot be stored
        assert isinstance(failed.value, Unavailable)
        assert failed.value.status == 503
        assert await store.load() == {A: Counts(tp=1)}  # rolled back, and still answering

    run(tmp_path, scenario)


def test_a_dead_child_fails_the_call_in_hand_and_is_restarted(tmp_path: Path) -> None:
    async def scenario(store: ChildStore) -> None:
        await store.commit({A: Counts(fp=1)})
        first = store.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)  # dead before it can read another request
        with pytest.raises(StoreError):  # sent at once, no await since the kill
            await store.commit({A: Counts(fp=1)})
        assert await store.load() == {A: Counts(fp=1)}  # a new child, on the same data
        replaced = store.pid
        assert replaced is not None
        assert replaced != first
        os.kill(replaced, signal.SIGKILL)
        while store.pid is not None:  # until the death has been seen
            await asyncio.sleep(0.01)
        assert await store.commit({A: Counts(fp=1)}) == {A: Counts(fp=2)}

    run(tmp_path, scenario)


def test_a_cancelled_call_does_not_shift_later_answers(tmp_path: Path) -> None:
    async def scenario(store: ChildStore) -> None:
        await store.load()  # the child is up
        commit = asyncio.ensure_future(store.commit({A: Counts(tp=1)}))  # its request is sent
        commit.cancel()
        # Whether or not the cancelled commit was applied, the next answer must be this one's.
        answer = await store.commit({A: Counts(tn=1)})
        assert answer[A].tn == 1
        assert await store.load() == answer

    run(tmp_path, scenario)
