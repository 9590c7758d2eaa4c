"""ChildStore: a SQLiteStore in a child process, answering pipelined requests over pipes."""

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from feedback_monitor.confusion import Counts
from feedback_monitor.errors import StoreBug, StoreError, StoreLost
from feedback_monitor.records import Feedback, Prediction
from feedback_monitor.series import SeriesState
from feedback_monitor.store import Accepted, Entry, Refused, Series, Totals
from feedback_monitor.store import child as child_store
from feedback_monitor.store.child import (
    _FAILURES,
    ChildStore,
    _failure,
    from_rows,
    to_rows,
    unavailable,
)
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


def stored(data_dir: Path) -> Totals:
    store = SQLiteStore(data_dir)
    try:
        return store.load()
    finally:
        store.close()


def counted(deltas: dict[Series, Counts]) -> list[Entry]:
    return [Entry(deltas, [])]


def through_json(value: object) -> Any:
    """What the other end of the pipe reads."""
    return msgspec.json.decode(msgspec.json.encode(value))


def test_rows_round_trip() -> None:
    counts = {A: Counts(1, 2, 3, 4), B: Counts(), ("ü", "'\n"): Counts(fn=9)}
    assert from_rows(through_json(to_rows(counts))) == counts


def test_entries_outcomes_and_states_round_trip() -> None:
    entry = Entry(
        {A: Counts(1, 2, 3, 4)},
        [(2, Prediction("p", 1, *B, 0.25, 1.5)), (5, Feedback(None, 0, id="p")),
         (6, Feedback(1, 1, "ü", "'\n", "f", None, 1_700_000_000.125))],
    )  # fmt: skip
    for sent in (
        entry,
        entry._replace(cap=1000, firsts=((0, A), (4, ("ü", "'\n")))),
    ):
        assert child_store.decode_entry(through_json(child_store.encode_entry(sent))) == sent
    for outcome in (Accepted(3, 1, [A, B]), Refused(409, "Conflicting feedback for id", "c", 5)):
        assert child_store.decode_outcome(through_json(child_store.encode_outcome(outcome))) == (
            outcome
        )
    states = {A: SeriesState(), B: SeriesState(Counts(1, 0, 2, 0), 9, 4, 2, 0.5, tuple(range(12)))}
    assert child_store.decode_states(through_json(child_store.encode_states(states))) == states


def test_load_write_expire_ping_and_close(tmp_path: Path) -> None:
    async def scenario(store: ChildStore) -> None:
        assert await store.load() == {}
        outcomes, totals = await store.write(counted({A: Counts(1, 2, 3, 4), B: Counts(tp=1)}))
        assert outcomes == [Accepted(11, 0, [A, B])]
        assert totals == {A: SeriesState(Counts(1, 2, 3, 4)), B: SeriesState(Counts(tp=1))}
        prediction = Entry({}, [(0, Prediction("p", 0, *B))])
        assert await store.write([prediction]) == ([Accepted(1, 0, [B])], {
            B: SeriesState(Counts(tp=1), predicted=1)
        })  # fmt: skip
        assert await store.expire(0.0) == {}  # stored just now: not before the epoch
        assert await store.expire(time.time() + 3600) == {B: SeriesState(Counts(tp=1), 1, 0, 1)}
        await store.ping()

    run(tmp_path, scenario)
    assert stored(tmp_path) == {  # the child let go of the file
        A: SeriesState(Counts(1, 2, 3, 4)),
        B: SeriesState(Counts(tp=1), 1, 0, 1),
    }


def test_pipelined_writes_are_answered_in_order_each_with_its_outcomes(tmp_path: Path) -> None:
    async def scenario(store: ChildStore) -> None:
        await store.load()  # the child is up
        requests = [
            [Entry({}, [(0, Prediction("p", 1, *B))])],
            [Entry({A: Counts(tn=1)}, []), Entry({}, [(4, Feedback(None, 1, id="nowhere"))])],
            [Entry({}, [(0, Feedback(None, 1, id="p"))])],
        ]
        # Sent without waiting: the child may merge them into one transaction.
        answers = await asyncio.gather(*(store.write(request) for request in requests))
        assert [outcomes for outcomes, _ in answers] == [
            [Accepted(1, 0, [B])],
            [Accepted(1, 0, [A]), Refused(404, "Unknown prediction id", "unknown_id", 4)],
            [Accepted(1, 0, [B])],
        ]
        final = {A: SeriesState(Counts(tn=1)), B: (await store.load())[B]}
        assert final[B].counts == Counts(tp=1)
        assert answers[-1][1] == {series: final[series] for series in answers[-1][1]}

    run(tmp_path, scenario)


def test_consecutive_writes_share_one_transaction_and_its_stats(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    write = ["write", [child_store.encode_entry(Entry({A: Counts(tp=1)}, []))]]
    requests: list[list[Any]] = [write, write, ["ping"], write, ["nonsense"]]
    answers: list[Any] = child_store._answer(store, [through_json(r) for r in requests])
    store.close()
    assert [answer[0] for answer in answers] == ["ok", "ok", "ok", "ok", "error"]
    first, second, _, third, _ = answers
    assert first[3][0] == 2  # the first answer of a transaction carries its feedback count
    assert second[3] is None
    assert third[3][0] == 1
    for answer in (first, second):
        assert child_store.decode_states(answer[2]) == {A: SeriesState(Counts(tp=2))}


def test_a_failed_request_is_refused_whole_and_the_child_stays_up(tmp_path: Path) -> None:
    async def scenario(store: ChildStore) -> None:
        await store.write(counted({A: Counts(tp=1)}))
        # A count SQLite cannot hold is no trouble of the disk's: a bug, answered 500.
        with pytest.raises(StoreBug):
            await store.write(counted({A: Counts(tp=1), B: Counts(tp=2**63)}))  # B overflows
        assert await store.load() == {A: SeriesState(Counts(tp=1))}  # rolled back, still up

    run(tmp_path, scenario)


def test_a_dead_child_fails_the_call_in_hand_and_is_restarted(tmp_path: Path) -> None:
    async def scenario(store: ChildStore) -> None:
        await store.write(counted({A: Counts(fp=1)}))
        first = store.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)  # dead before it can read another request
        with pytest.raises(StoreError):  # sent at once, no await since the kill
            await store.write(counted({A: Counts(fp=1)}))
        assert await store.load() == {A: SeriesState(Counts(fp=1))}  # a new child, same data
        replaced = store.pid
        assert replaced is not None
        assert replaced != first
        os.kill(replaced, signal.SIGKILL)
        while store.pid is not None:  # until the death has been seen
            await asyncio.sleep(0.01)
        assert await store.write(counted({A: Counts(fp=1)})) == (
            [Accepted(1, 0, [A])],
            {A: SeriesState(Counts(fp=2))},
        )

    run(tmp_path, scenario)


def test_a_cancelled_call_does_not_shift_later_answers(tmp_path: Path) -> None:
    async def scenario(store: ChildStore) -> None:
        await store.load()  # the child is up
        write = store.write(counted({A: Counts(tp=1)}))  # its request is sent
        write.cancel()
        # Whether or not the cancelled write was applied, the next answer must be this one's.
        _, answer = await store.write(counted({A: Counts(tn=1)}))
        assert answer[A].counts.tn == 1
        assert await store.load() == answer

    run(tmp_path, scenario)


def test_a_bug_in_the_store_process_is_internal_and_its_trouble_unavailable(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    async def scenario(store: ChildStore) -> None:
        await store.load()
        pipe = store._pipe  # a malformed request stands for a bug on either side
        assert pipe is not None
        with pytest.raises(StoreBug):
            await pipe.send(["write", [["not", "an", "entry"]]])
        await store.ping()  # the child stays up

    run(tmp_path, scenario)
    assert "Traceback" in capfd.readouterr().err  # the child logged the bug's traceback


def test_a_commit_whose_end_is_unknown_reaches_the_server_as_lost() -> None:
    """A PostgreSQL connection lost once its COMMIT went (``PostgresConnector.transaction``):
    the server's recorder answers 503 'may still be stored' for StoreLost, and reloads."""
    lost = _failure(StoreLost("connection lost during the commit: gone"))
    assert lost[:2] == ["error", "lost"]
    assert isinstance(_FAILURES["lost"](str(lost[2])), StoreLost)
    assert _failure(OSError("disk full"))[:2] == ["error", "unavailable"]
    assert type(_FAILURES["unavailable"]("disk full")) is StoreError


def test_sqlite_errors_are_told_apart_by_their_result_code(tmp_path: Path) -> None:
    """A locked, read-only or unreadable database is the store's trouble (a 503 to retry); an
    error of the SQL itself (a syntax error, too many parameters) is a bug (a 500)."""
    path = tmp_path / "db.sqlite3"
    with contextlib.closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as db:
        db.execute("CREATE TABLE t (x)")
        db.execute("BEGIN IMMEDIATE")
        with contextlib.closing(sqlite3.connect(path, timeout=0)) as other:
            errors = [caught(other.execute, "INSERT INTO t VALUES (1)")]  # locked
        db.execute("ROLLBACK")
        uri = f"file:{path}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as read_only:
            errors.append(caught(read_only.execute, "INSERT INTO t VALUES (1)"))
        (tmp_path / "junk").write_bytes(b"not a database" * 100)
        with contextlib.closing(sqlite3.connect(tmp_path / "junk")) as junk:
            errors.append(caught(junk.execute, "SELECT * FROM t"))
        assert [unavailable(e) for e in errors] == [True, True, True], errors
        bugs = [caught(db.execute, "SELEC 1"), caught(db.execute, "SELECT * FROM missing")]
        bugs.append(caught(db.execute, "SELECT ?", (1, 2)))
        assert [unavailable(e) for e in bugs] == [False, False, False], bugs


def caught(call: Callable[..., object], *args: object) -> Exception:
    with pytest.raises(sqlite3.Error) as error:
        call(*args)
    return error.value


def test_a_bug_reading_one_answer_leaves_the_next_in_step(tmp_path: Path) -> None:
    """An answer that fails to convert fails its own request; the answers after it still go to
    their requests (they were left waiting for ever, the pipe out of step)."""

    def misread(answer: object) -> object:
        raise KeyError("a bug reading the answer")

    async def scenario(store: ChildStore) -> None:
        await store.load()
        pipe = store._pipe
        assert pipe is not None
        broken, fine = pipe.send(["ping"], misread), pipe.send(["load"])
        with pytest.raises(KeyError):
            await asyncio.wait_for(broken, 10)
        assert await asyncio.wait_for(fine, 10) == []
        await asyncio.wait_for(store.ping(), 10)

    run(tmp_path, scenario)


@pytest.mark.parametrize(("given_up", "patience"), [(False, "3"), (True, "0.5")])
def test_a_store_process_is_given_less_time_to_exit_only_when_hung_in_an_awaited_answer(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    given_up: bool,
    patience: str,
) -> None:
    """At close, an answer still awaited (a write the recorder gave up on) means the store is
    hung: a short wait before it is killed. One whose caller was cancelled (the expiry the
    shutdown cancels) may be a long sweep, which gets the full wait (it had 1 s: killed in the
    middle of a sweep, it left its write-ahead log behind)."""
    monkeypatch.setattr(child_store, "EXIT_WAIT", 3.0)
    monkeypatch.setattr(child_store, "HUNG_EXIT_WAIT", 0.5)

    async def scenario(store: ChildStore) -> None:
        await store.load()
        assert store.pid is not None
        os.kill(store.pid, signal.SIGSTOP)  # it never answers nor exits by itself now
        pipe = store._pipe
        assert pipe is not None
        answer = pipe.send(["ping"])
        if not given_up:
            answer.cancel()
        with caplog.at_level(logging.ERROR):
            await store.close()
        if given_up:
            with pytest.raises(StoreLost):
                await answer

    run(tmp_path, scenario)
    assert f"the store process did not exit within {patience} s: killed" in caplog.text
