"""``Recorder.committed_at``: when the store committed the last write it answered, which
/ready trusts instead of a probe queued behind the writes; None once a write fails."""

import asyncio
from pathlib import Path

import pytest

from feedback_monitor.recorder import Recorder
from feedback_monitor.records import Feedback
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
