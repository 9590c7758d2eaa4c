"""POST /feedback on 1, 2 and 3 replicas sharing PostgreSQL, beside the single SQLite node.

wrk's 32 connections are spread over the replicas (one wrk process per replica), all writing
the same series; each 200 must be durable, checked against the counts in the database. The
goal on the 2-core machine: two replicas at least match the single SQLite node.

Everything runs on the same machine, wrk included, so the figures come with the machine's CPU
per request and the requests per commit. Beside them, a floor: the CPU of the smallest durable
transaction PostgreSQL and psycopg can run (``floor``). Two replicas match the SQLite node only
if the SQLite node's CPU per request outside its store, plus that floor shared by the requests
of one commit, fits in what the machine's cores allow per request at the SQLite node's rate.
"""

import contextlib
import functools
import os
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from tests.integration import postgres

from bench import wrk
from bench.cpu import machine_busy, process_cpu
from bench.http_throughput import stored_total
from bench.memory import children
from feedback_monitor.testing import ServiceProcess

SECONDS = 5
ROUNDS = 2
CONNECTIONS = 32
FLOOR_TRANSACTIONS = 3000


@dataclass(frozen=True)
class Figures:
    rate: float  # requests/s, the median over rounds
    durable: bool  # every 2xx stored
    cpu: float  # seconds of the machine's CPU per request (wrk's, the database's, all)
    store_cpu: float  # of that, the service's store processes'
    per_commit: float  # requests per commit


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


def commits(nodes: list[ServiceProcess]) -> tuple[float, float]:
    """Records committed and commits, over the nodes (their commit batch-size histograms)."""
    records = count = 0.0
    for node in nodes:
        for line in httpx.get(node.url + "/metrics").text.splitlines():
            if line.startswith("feedback_commit_batch_size_sum "):
                records += float(line.split()[1])
            elif line.startswith("feedback_commit_batch_size_count "):
                count += float(line.split()[1])
    return records, count


def measure(nodes: list[ServiceProcess], stored: Callable[[], int]) -> Figures:
    """The median rate over rounds after a warm-up, whether every 2xx was stored, and the CPU
    and requests per commit over all rounds."""
    urls = [node.url for node in nodes]
    load(urls, 1)
    stores = [pid for node in nodes for pid in children(node.pid)]
    before, busy, store_cpu = stored(), machine_busy(), sum(map(process_cpu, stores))
    records, count = commits(nodes)
    rounds = [load(urls, SECONDS) for _ in range(ROUNDS)]
    busy, store_cpu = machine_busy() - busy, sum(map(process_cpu, stores)) - store_cpu
    records_after, count_after = commits(nodes)
    acknowledged = sum(ok for _, ok in rounds)
    return Figures(
        statistics.median(rate for rate, _ in rounds),
        stored() - before >= acknowledged,
        busy / acknowledged,
        store_cpu / acknowledged,
        (records_after - records) / (count_after - count),
    )


def floor(url: str) -> float:
    """Seconds of the machine's CPU per smallest durable transaction, client and server: BEGIN,
    one UPDATE that returns its row, COMMIT, pipelined as the store's are."""
    with psycopg.connect(url, autocommit=True, prepare_threshold=0) as db:
        db.execute("CREATE TABLE floor (id integer PRIMARY KEY, n bigint NOT NULL)")
        db.execute("INSERT INTO floor VALUES (1, 0)")
        busy = machine_busy()
        for _ in range(FLOOR_TRANSACTIONS):
            with db.pipeline():
                db.execute("BEGIN", prepare=False)
                row = db.execute("UPDATE floor SET n = n + %s WHERE id = %s RETURNING n", (1, 1))
                db.execute("COMMIT", prepare=False)
            row.fetchone()
        return (machine_busy() - busy) / FLOOR_TRANSACTIONS


def main() -> dict[str, float]:
    if postgres.binaries() is None:  # the other benchmarks need no database: they go on
        print("PostgreSQL is not installed (apt-get install postgresql): no replica figures")
        return {}
    figures: dict[str, Figures] = {}
    with tempfile.TemporaryDirectory() as tmp, services(1, Path(tmp) / "sqlite") as (node,):
        figures["sqlite"] = measure([node], lambda: stored_total(node.url))
    with postgres.cluster() as cluster:
        for count in (1, 2, 3):
            url = cluster.database(f"replicas_{count}")
            with (
                tempfile.TemporaryDirectory() as tmp,
                services(count, Path(tmp), "--store", url) as replicas,
            ):
                figures[f"postgresql x{count}"] = measure(
                    replicas, functools.partial(database_total, url)
                )
        transaction = floor(cluster.database("floor"))
    report(figures, transaction)
    return {name: f.rate for name, f in figures.items()}


def report(figures: dict[str, Figures], transaction: float) -> None:
    print(f"POST /feedback, wrk -c{CONNECTIONS} spread over the replicas, {SECONDS} s x {ROUNDS}")
    sqlite = figures["sqlite"]
    for name, f in figures.items():
        verdict = "every 2xx stored" if f.durable else "LOST FEEDBACK"
        print(f"  {name:16} {f.rate:8.0f} req/s  ({f.rate / sqlite.rate:.2f} x SQLite)  "
              f"{f.cpu * 1e6:4.0f} us CPU/request  {f.per_commit:4.1f} requests/commit  "
              f"{verdict}")  # fmt: skip
    two = figures["postgresql x2"]
    goal = "met" if two.rate >= sqlite.rate else "MISSED"
    print(f"  goal, two replicas >= the single SQLite node: {goal}")
    # A lower bound: the SQLite node's CPU per request outside its store (server, wrk, kernel)
    # stays, and the store's work is at least one smallest transaction per commit.
    cores = os.cpu_count() or 1
    budget = cores / sqlite.rate
    outside = sqlite.cpu - sqlite.store_cpu
    needed = outside + transaction / two.per_commit
    reach = "within reach" if needed <= budget else "out of reach"
    print(f"  floor: the smallest durable PostgreSQL transaction (BEGIN, an UPDATE returning its "
          f"row, COMMIT, pipelined)\n  takes {transaction * 1e6:.0f} us of CPU here, client and "
          f"server. Two replicas commit {two.per_commit:.1f} requests at a time: "
          f"{transaction / two.per_commit * 1e6:.0f} us a request,\n  beside the "
          f"{outside * 1e6:.0f} us a request the SQLite node spends outside its store: "
          f"{needed * 1e6:.0f} us, where {cores} cores allow {budget * 1e6:.0f} us\n  a request "
          f"at the SQLite node's rate: the goal is {reach} at that batch size, before any of "
          f"the store's own work")  # fmt: skip


if __name__ == "__main__":
    main()
