"""Jepsen-style set checks: clients send items that each carry an id (predictions with late
labels, feedback with its own prediction, and repeats of both to any server) while a server is
killed with SIGKILL and restarted; then what the database holds is compared with what was sent.

- lost = acknowledged minus stored: must be empty (a 2xx promises the item is stored);
- unexpected = stored minus attempted: must be empty (nothing appears that nobody sent);
- the confusion counts are exactly the stored labelled items, each once, and every server's
  ``/metrics`` and ``/api/v1/models`` agree with them.

Once for three replicas on PostgreSQL, once for a single SQLite node.
"""

import contextlib
import functools
import random
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from feedback_monitor.store.sqlite import FILENAME
from feedback_monitor.testing import ServiceProcess
from tests.integration import postgres
from tests.integration.helpers import COUNTERS, Load, running, scrape, total, wait_until

pytestmark = pytest.mark.integration

MODEL = "fraud"
VERSIONS = ("v1", "v2")
ACKS = 400  # before the kill, and after the restart
CELL = {(1, 1): "tp", (0, 0): "tn", (1, 0): "fp", (0, 1): "fn"}
Item = tuple[str, int, int]  # version, prediction, actual
Cells = dict[tuple[str, str], dict[str, int]]
NONE: frozenset[int] = frozenset()


@dataclass
class Ledger:
    """What the clients sent and what the servers acknowledged, by id."""

    attempted: dict[str, Item] = field(default_factory=dict)
    predicted: set[str] = field(default_factory=set)  # a prediction acknowledged
    labelled: set[str] = field(default_factory=set)  # a label acknowledged
    unexpected: list[tuple[int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Clients(Load):
    """Threads that send a mix of requests with ids to the servers of ``urls``, any of them."""

    def __init__(
        self, urls: Sequence[str], threads: int = 8, seed: int = 0, tolerated: frozenset[int] = NONE
    ) -> None:
        self.urls = urls
        self.tolerated = tolerated  # statuses expected besides success (503 in an outage)
        self.ledger = Ledger()
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._run_ids, args=(n, random.Random(seed * 100 + n)))
            for n in range(threads)
        ]

    def _run_ids(self, number: int, rng: random.Random) -> None:
        sent: list[tuple[str, dict[str, Any], str]] = []  # what may be sent again
        waiting: list[str] = []  # predictions whose label comes later
        with httpx.Client(timeout=30.0) as client:
            for n in range(1_000_000):
                if self.stopping.is_set():
                    return
                path, body, kind = self._next(f"{number}-{n}", rng, sent, waiting)
                self._send(client, rng.choice(self.urls) + path, body, kind)

    def _next(
        self,
        new_id: str,
        rng: random.Random,
        sent: list[tuple[str, dict[str, Any], str]],
        waiting: list[str],
    ) -> tuple[str, dict[str, Any], str]:
        """A new item, a late label, or a repeat of anything sent before."""
        choice = rng.random()
        if sent and choice < 0.25:
            return rng.choice(sent)
        if waiting and choice < 0.5:
            id_ = waiting.pop(rng.randrange(len(waiting)))
            request = ("/feedback", {"id": id_, "actual": self.ledger.attempted[id_][2]}, "label")
        else:
            version, prediction, actual = rng.choice(VERSIONS), rng.randint(0, 1), rng.randint(0, 1)
            with self.ledger.lock:
                self.ledger.attempted[new_id] = (version, prediction, actual)
            body = {"id": new_id, "prediction": prediction, "model": MODEL, "version": version}
            if choice < 0.75:
                waiting.append(new_id)
                request = ("/predictions", body, "prediction")
            else:
                request = ("/feedback", {**body, "actual": actual}, "feedback")
        sent.append(request)
        return request

    def _send(self, client: httpx.Client, url: str, body: dict[str, Any], kind: str) -> None:
        try:
            response = client.post(url, json=body)
        except httpx.TransportError:  # a server down: not acknowledged, maybe stored
            return
        with self.ledger.lock:
            if response.is_success:
                if kind != "label":
                    self.ledger.predicted.add(body["id"])
                if kind != "prediction":
                    self.ledger.labelled.add(body["id"])
            elif response.status_code not in self.tolerated and (response.status_code, kind) != (
                404,
                "label",
            ):
                # A label may find its prediction unstored (its server was killed first).
                self.ledger.unexpected.append((response.status_code, response.text))

    def acks(self) -> int:
        with self.ledger.lock:
            return len(self.ledger.predicted) + len(self.ledger.labelled)


def run_with_a_kill(clients: Clients, victim: ServiceProcess, acks: int = ACKS) -> None:
    """Load until ``acks`` acknowledgements, SIGKILL ``victim``, restart it, load as much again
    (with other servers, they take the load meanwhile)."""
    meanwhile = acks // 3 if len(clients.urls) > 1 else 0
    with clients:
        clients.wait_for_acks(acks)
        victim.kill()
        clients.wait_for_acks(acks + meanwhile)
        victim.start()
        clients.wait_for_acks(2 * acks + meanwhile)
    assert clients.ledger.unexpected == []


class Database:
    """What a database holds, read through its own driver (sqlite3 or psycopg)."""

    def __init__(self, execute: Callable[[str], list[tuple[Any, ...]]]) -> None:
        self.stored = {
            str(id_): (str(version), int(prediction), actual)
            for id_, version, prediction, actual in execute(
                "SELECT id, version, prediction, actual FROM outcomes"
            )
        }
        self.counts: Cells = {
            (str(model), str(version)): {"tp": int(tp), "tn": int(tn), "fp": int(fp), "fn": int(fn)}
            for model, version, tp, tn, fp, fn in execute(
                "SELECT model, version, sum(tp), sum(tn), sum(fp), sum(fn) FROM confusion"
                " GROUP BY model, version"  # a row per writer's shard
            )
        }


def check(ledger: Ledger, database: Database) -> None:
    """The set check, and the counts against the stored items."""
    stored, attempted = database.stored, ledger.attempted
    lost = {i for i in ledger.predicted if i not in stored}
    lost |= {i for i in ledger.labelled if i not in stored or stored[i][2] != attempted[i][2]}
    assert lost == set(), f"{len(lost)} acknowledged items lost"
    unexpected = {i for i in stored if i not in attempted}
    unexpected |= {i for i, (v, p, a) in stored.items() if (v, p) != attempted[i][:2]}
    unexpected |= {i for i, (_, _, a) in stored.items() if a not in (None, attempted[i][2])}
    assert unexpected == set(), f"{len(unexpected)} stored items nobody sent"
    assert ledger.predicted
    assert ledger.labelled
    assert database.counts == cells(stored.values())


def cells(items: Iterator[tuple[str, int, int | None]] | Any) -> Cells:
    """The confusion counts of the labelled items."""
    counts: Cells = {}
    for version, prediction, actual in items:
        row = counts.setdefault((MODEL, version), dict.fromkeys(CELL.values(), 0))
        if actual is not None:
            row[CELL[prediction, actual]] += 1
    return counts


def served(url: str) -> tuple[Cells, Cells]:
    """The counts on a server's ``/metrics`` and in its ``/api/v1/models``."""
    with httpx.Client(base_url=url, timeout=10.0) as client:
        samples = scrape(client)
        models = client.get("/api/v1/models").json()["models"]
    metrics = {
        (MODEL, v): {c: int(total(samples, n, model=MODEL, version=v)) for c, n in COUNTERS.items()}
        for v in VERSIONS
    }
    api = {(m["model"], m["version"]): m["counts"] for m in models}
    return metrics, api


def assert_served(urls: Sequence[str], counts: Cells) -> None:
    """Every server shows the database's counts (replicas within a refresh or two)."""
    for url in urls:
        shows = functools.partial(shown, url, counts)
        wait_until(shows, 10.0, f"{url} shows {counts}", 0.1)


def shown(url: str, counts: Cells) -> bool:
    return served(url) == (counts, counts)


@pytest.fixture(scope="module")
def cluster() -> Iterator[postgres.Cluster]:
    with postgres.cluster() as started:
        yield started


@contextlib.contextmanager
def replicas(url: str, root: Path, count: int, *args: str) -> Iterator[list[ServiceProcess]]:
    """``count`` services on the database at ``url``, each on a port and data dir of its own."""
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(open(root / f"replica-{n}.log", "ab")) for n in range(count)]
        started = [
            ServiceProcess(root / f"replica-{n}", "--store", url, *args, log=log)
            for n, log in enumerate(logs)
        ]
        for service in started:
            stack.callback(service.__exit__, None, None, None)
        with ThreadPoolExecutor(count) as pool:  # together: their migrations race too
            list(pool.map(ServiceProcess.start, started))
        yield started


def test_set_check_on_three_replicas_with_a_kill(cluster: postgres.Cluster, tmp_path: Path) -> None:
    url = cluster.database("set_check")
    with replicas(url, tmp_path, 3) as services:
        urls = [s.url for s in services]
        clients = Clients(urls, seed=1)
        run_with_a_kill(clients, services[0])
        with psycopg.connect(url) as db:
            database = Database(lambda query: db.execute(query).fetchall())
        check(clients.ledger, database)
        assert_served(urls, database.counts)


def test_set_check_on_a_single_sqlite_node(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with (
        open(tmp_path / "service.log", "ab") as log,
        running(ServiceProcess(data_dir, log=log)) as service,
    ):
        clients = Clients([service.url], seed=2)
        run_with_a_kill(clients, service)
        served_counts = served(service.url)
        service.terminate()
    with contextlib.closing(sqlite3.connect(data_dir / FILENAME)) as db:
        database = Database(lambda query: db.execute(query).fetchall())
    check(clients.ledger, database)
    assert served_counts == (database.counts, database.counts)
