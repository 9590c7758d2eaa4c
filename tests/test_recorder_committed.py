"""``Recorder.committed_at``: when the store committed the last write it answered, which
/ready trusts instead of a probe queued behind the writes; None once a write fails."""

import asyncio
from pathlib import Path

import pytest

from feedback_monitor.errors import StoreError
from feedback_monitor.recorder import Recorder
from feedback_monitor.records import Feedback
from feedback_monitor.store import Totals
from tests.stores import GatedStore, StoreDown, ThreadedStore


def test_committed_at_is_the_last_commit_until_a_write_fails(tmp_path: Path) -> None:
    store = GatedStore(tmp_path)

    async def main() -> None:
        recorder = Recorder(ThreadedStore(store))
        await recorder.start()
        loop = asyncio.get_running_loop()
        try:
            store.failing = True
            with pytest.raises(StoreDown):
                await recorder.record(Feedback(1, 1))
            assert recorder.committed_at is None  # a full disk has committed nothing
            store.failing = False
            before = loop.time()
            await recorder.record(Feedback(1, 1))
            committed = recorder.committed_at
            assert committed is not None
            assert before <= committed <= loop.time()
            store.failing = True
            with pytest.raises(StoreDown):
                await recorder.record(Feedback(0, 0))
            assert recorder.committed_at is None  # no commit to vouch for the store now
        finally:
            await recorder.close()

    asyncio.run(main())


class DownStore(GatedStore):
    """A store whose reads fail too while it is failing (a database that is down)."""

    def load(self) -> Totals:
        if self.failing:
            raise StoreError("database down")  # as the store process raises it
        return super().load()


def test_a_failed_reload_of_a_shared_store_vouches_for_no_commit(tmp_path: Path) -> None:
    """With replicas the recorder reloads every series each second: once that fails (the
    database went down with no write since), the commit a moment before vouches for nothing,
    and /ready probes again (it said ready for --write-timeout seconds)."""
    store = DownStore(tmp_path)

    async def main() -> None:
        recorder = Recorder(ThreadedStore(store), refresh=0.01)
        await recorder.start()
        try:
            await recorder.record(Feedback(1, 1))
            assert recorder.committed_at is not None
            store.failing = True
            deadline = asyncio.get_running_loop().time() + 10
            while recorder.committed_at is not None:  # a reload or so
                assert asyncio.get_running_loop().time() < deadline, "still vouched for"
                await asyncio.sleep(0.01)
        finally:
            store.failing = False
            await recorder.close()

    asyncio.run(main())
