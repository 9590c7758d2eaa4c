"""Runs a Store in a child process: the event loop never waits on the disk or shares its GIL.

A store thread in the server process has to win the GIL back from a busy event loop after every
SQLite call, which made each commit take several times its fsync under load; a child process
commits on the other core (``make bench`` measures the difference). The child is the only
writer; it ignores SIGINT and SIGTERM and exits when its stdin closes, so a dying server
(even by SIGKILL) leaves no writer behind once the commit in hand is done.

Protocol: one JSON array per line each way; the parent sends one request at a time.

- ``["load"]`` -> ``["ok", rows]``; ``["commit", rows]`` -> ``["ok", rows]``, the totals;
  ``["ping"]`` -> ``["ok", null]``. A row is ``[model, version, tp, tn, fp, fn]``.
- Any failure -> ``["error", "<exception>"]``, and the child stays up.
"""

import asyncio
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from feedback_monitor.confusion import Counts
from feedback_monitor.errors import Unavailable
from feedback_monitor.store import Series, Store
from feedback_monitor.store.sqlite import SQLiteStore

Row = tuple[str, str, int, int, int, int]
_STREAM_LIMIT = 64 * 1024 * 1024  # a load() answer holds every series on one line

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(list[Any]).decode


class StoreError(Unavailable):
    """The store failed or its process is gone; the failed call was not acknowledged.

    The client sees only "Store unavailable"; ``detail`` is for the log. A commit whose answer
    was lost (its process died after COMMIT) may still be stored: a retry without an id counts
    it again, which is why clients should send ids.
    """

    def __init__(self, detail: str) -> None:
        super().__init__("Store unavailable", "store_unavailable")
        self.detail = detail

    def __str__(self) -> str:
        return f"Store unavailable: {self.detail}"


def to_rows(counts: Mapping[Series, Counts]) -> list[Row]:
    return [(model, version, c.tp, c.tn, c.fp, c.fn) for (model, version), c in counts.items()]


def from_rows(rows: list[Row]) -> dict[Series, Counts]:
    return {(row[0], row[1]): Counts(*row[2:]) for row in rows}


class ChildStore:
    """The async face of a SQLiteStore living in a child process."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()  # one request on the pipe at a time

    async def _start(self) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "feedback_monitor.store.child", str(self.data_dir)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=_STREAM_LIMIT,
        )
        self._process = process
        return process

    async def _call(self, *request: object) -> Any:
        # Shielded: a caller that is cancelled must not leave its answer in the pipe for the next.
        return await asyncio.shield(self._exchange(request))

    async def _exchange(self, request: tuple[object, ...]) -> Any:
        async with self._lock:
            process = self._process
            if process is None or process.returncode is not None:
                process = await self._start()
            assert process.stdin is not None
            assert process.stdout is not None
            try:
                process.stdin.write(_encode(request) + b"\n")
                await process.stdin.drain()
                line = await process.stdout.readline()
            except (ConnectionError, asyncio.IncompleteReadError) as error:
                raise StoreError(f"store process failed: {error}") from error
            if not line:
                raise StoreError(f"store process exited with {await process.wait()}")
            status, value = _decode(line)
            if status != "ok":
                raise StoreError(value)
            return value

    async def load(self) -> dict[Series, Counts]:
        return from_rows(await self._call("load"))

    async def commit(self, deltas: Mapping[Series, Counts]) -> dict[Series, Counts]:
        return from_rows(await self._call("commit", to_rows(deltas)))

    async def ping(self) -> None:
        await self._call("ping")

    async def close(self) -> None:
        async with self._lock:
            if self._process is not None and self._process.stdin is not None:
                self._process.stdin.close()
                await self._process.wait()


def _answer(store: Store, request: list[Any]) -> object:
    match request:
        case ["load"]:
            return to_rows(store.load())
        case ["commit", rows]:
            return to_rows(store.commit(from_rows(rows)))
        case ["ping"]:
            store.ping()
            return None
    raise ValueError(f"unknown request {request!r}")


def serve(store: Store) -> None:
    """The child's loop: answer each line on stdin until it closes."""
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        try:
            answer: list[object] = ["ok", _answer(store, _decode(line))]
        except Exception as error:  # reported to the parent, which logs and fails the requests
            answer = ["error", f"{type(error).__name__}: {error}"]
        out.write(_encode(answer) + b"\n")
        out.flush()
    store.close()


if __name__ == "__main__":
    # The parent decides when to stop: it closes our stdin after its last commit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve(SQLiteStore(Path(sys.argv[1])))
