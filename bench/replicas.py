"""POST /feedback on 1, 2 and 3 replicas sharing PostgreSQL, beside the single SQLite node.

wrk's 32 connections are spread over the replicas (one wrk process per replica), all writing
the same series; each 200 must be durable, checked against the counts in the database. The
goal on the 2-core machine: two replicas at least match the single SQLite node.
"""

import contextlib
import functools
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
from tests.integration import postgres

from bench import wrk
from bench.http_throughput import stored_total
from feedback_monitor.testing import ServiceProcess

SECONDS = 5
ROUNDS = 2
CONNECTIONS = 32


@contextlib.contextmanager
def services(count: int, root: Path, *args: str) -> Iterator[list[ServiceProcess]]:
    """``count`` services started together, each on a data dir and port of its own."""
    with contextlib.ExitStack() as stack:
        started = [ServiceProcess(root / f"node-{n}", *args, log=subprocess.DEVNULL)
                   for n in range(count)]  # fmt: skip
        for service in started:
            stack.enter_context(service)
        yield started


def load(urls: list[str], seconds: int) -> tuple[float, int]:
    """wrk on every URL at once, the connections shared out; requests/s and 2xx in all."""
    shares = [CONNECTIONS // len(urls) + (n < CONNECTIONS % len(urls)) for n in range(len(urls))]
    with ThreadPoolExecutor(len(urls)) as pool:
        results = list(pool.map(lambda u, c: wrk.run(u + "/feedback", seconds, c), urls, shares))
    return sum(r.requests_per_second for r in results), sum(r.ok for r in results)


def database_total(url: str) -> int:
    with psycopg.connect(url) as db:
        row = db.execute("SELECT coalesce(sum(tp + tn + fp + fn), 0) FROM confusion").fetchone()
    return int(row[0]) if row else 0


def measure(urls: list[str], stored: Callable[[], int]) -> tuple[float, bool]:
    """The median rate over rounds after a warm-up, and whether every 2xx was stored."""
    load(urls, 1)
    before = stored()
    rounds = [load(urls, SECONDS) for _ in range(ROUNDS)]
    acknowledged = sum(ok for _, ok in rounds)
    return statistics.median(rate for rate, _ in rounds), stored() - before >= acknowledged


def main() -> dict[str, float]:
    figures: dict[str, float] = {}
    durable: dict[str, bool] = {}
    with tempfile.TemporaryDirectory() as tmp, services(1, Path(tmp) / "sqlite") as (node,):
        figures["sqlite"], durable["sqlite"] = measure([node.url], lambda: stored_total(node.url))
    with postgres.cluster() as cluster:
        for count in (1, 2, 3):
            url = cluster.database(f"replicas_{count}")
            with (
                tempfile.TemporaryDirectory() as tmp,
                services(count, Path(tmp), "--store", url) as replicas,
            ):
                name = f"postgresql x{count}"
                figures[name], durable[name] = measure(
                    [r.url for r in replicas], functools.partial(database_total, url)
                )
    report(figures, durable)
    return figures


def report(figures: dict[str, float], durable: dict[str, bool]) -> None:
    print(f"POST /feedback, wrk -c{CONNECTIONS} spread over the replicas, {SECONDS} s x {ROUNDS}")
    sqlite = figures["sqlite"]
    for name, rate in figures.items():
        verdict = "every 2xx stored" if durable[name] else "LOST FEEDBACK"
        print(f"  {name:16} {rate:8.0f} req/s  ({rate / sqlite:.2f} x SQLite)  {verdict}")
    two = figures["postgresql x2"]
    goal = "met" if two >= sqlite else "MISSED"
    print(f"  goal, two replicas >= the single SQLite node: {goal}")


if __name__ == "__main__":
    main()
